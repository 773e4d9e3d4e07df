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
- `clipspec.cli`: what every command line shares: one-line `error:`
  answers (exit 2), Ctrl-C without a traceback (exit 130), TensorFlow
  imported late (fast `--help`) and without CUDA noise on machines
  without a GPU, file names of any bytes in output and JSON.

`training` and `serving` both build on this package and never on each
other. Names are imported on first use, so `import clipspec` is cheap.

Example:

>>> import clipspec
>>> clipspec.ClipFormat(clip_length=8, crop_size=56).input_shape
(8, 56, 56, 3)
"""

from clipspec.lazy import lazy_exports

_LAZY = {
    "ClipFormat": "clipspec.format",
    "DEFAULT_MEAN": "clipspec.format",
    "DEFAULT_STD": "clipspec.format",
    "RunDir": "clipspec.rundir",
    "RunDirError": "clipspec.rundir",
    "VideoDecodeError": "clipspec.decode",
    "decode_video": "clipspec.decode",
    "eval_views": "clipspec.sampling",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
