"""The clip contract shared by training and serving.

- `ClipFormat` (`clipspec.format`): how a model's clips are cut, sized and
  normalised, and its class names; written into run directories and
  SavedModels, read back by every consumer.
- `RunDir` (`clipspec.rundir`): the one reader of a training run directory.
- `decode_video` (`clipspec.decode`): video file → RGB frames (PyAV),
  upright, with reasons for every unusable file.
- `clipspec.sampling` (NumPy) and `clipspec.views` (TensorFlow): which
  frames make a clip and the test-time views, identical in evaluation,
  export and the serving client.
- `clipspec.render`: heat-map overlays as PNG grids and GIFs.

`training` and `serving` both build on this package and never on each
other. `import clipspec` loads NumPy but not TensorFlow (only
`clipspec.views` needs it), so command lines answer `--help` at once and
decoding workers start light.

Example:

>>> import clipspec
>>> clipspec.ClipFormat(clip_length=8, crop_size=56).input_shape
(8, 56, 56, 3)
"""

from clipspec.decode import VideoDecodeError, decode_video
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, ClipFormat
from clipspec.rundir import RunDir, RunDirError
from clipspec.sampling import eval_views

__all__ = [
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "ClipFormat",
    "RunDir",
    "RunDirError",
    "VideoDecodeError",
    "decode_video",
    "eval_views",
]
