"""Explanations over time: `--timeline --explain DIR`.

For every window (or every Nth, `--explain-every`) the export's `explain`
signature gives the per-block class-evidence maps of the window's clip
(for its top class). Written to DIR, as windows are answered:

- `<name>_w<index>_maps.npz`: the maps (`maps` float16 `[blocks, T, S, S]`,
  `block_names`, `start`, `end` seconds);
- `<name>_explain.jsonl`: one line per explained window (times, the
  model's class and probability, each block's guess and confidence, the
  maps file);
- `<name>_overlay.mp4`: the clip frames as the model saw them (centre
  crop), one block's evidence (default: the deepest) blended in
  (`clipspec.render`) and the current label written above; each window
  adds the frames after those already shown, so with every window
  explained it plays through the video at its sampled frame rate. When no
  MP4 encoder is available it is `<name>_overlay.gif` (at most
  `MAX_GIF_FRAMES` frames, since a GIF is written at the end).

The frames drawn are cropped here with Pillow's resize, the model's
exactly by the export (`clipspec.views`): the picture may differ from the
model's input by rounding, not by position.
"""

import json
import pathlib

import numpy as np

from clipspec import render
from clipspec import signatures as names

MAX_GIF_FRAMES = 1200
_CODECS = ("libx264", "mpeg4")


def centre_crops(clip, size):
    """uint8 `[T, size, size, 3]`: each frame's short side resized to `size`
    (Pillow, bilinear with antialiasing) and the centre cut out."""
    from PIL import Image

    frames = []
    for frame in clip:
        height, width = frame.shape[:2]
        scale = size / min(height, width)
        shape = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = np.asarray(Image.fromarray(frame).resize(shape, Image.Resampling.BILINEAR))
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        frames.append(image[top : top + size, left : left + size])
    return np.stack(frames)


class OverlayVideo:
    """Images appended one by one to an MP4 (PyAV), else to a GIF."""

    def __init__(self, stem_path, fps, codecs=None):
        self.stem_path, self.fps = pathlib.Path(stem_path), max(1.0, float(fps))
        self.codecs = _CODECS if codecs is None else tuple(codecs)
        self.path, self._container, self._stream, self._gif = None, None, None, None

    def _open(self, width, height):
        import av

        for codec in self.codecs:
            path = self.stem_path.with_name(self.stem_path.name + "_overlay.mp4")
            try:
                container = av.open(str(path), "w")
                stream = container.add_stream(codec, rate=round(self.fps))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.open()  # fails here when the encoder is missing
            except (av.error.FFmpegError, ValueError):
                container.close()
                path.unlink(missing_ok=True)
                continue
            self.path, self._container, self._stream = path, container, stream
            return
        self.path = self.stem_path.with_name(self.stem_path.name + "_overlay.gif")
        self._gif = []

    def add(self, image):
        import av

        image = np.asarray(image.convert("RGB"))
        height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2  # yuv420p: even
        if self.path is None:
            self._open(width, height)
        if self._gif is not None:
            if len(self._gif) < MAX_GIF_FRAMES:
                self._gif.append(image)
            return
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), "rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self):
        from PIL import Image

        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        elif self._gif:
            render.save_gif([Image.fromarray(i) for i in self._gif], self.path, fps=self.fps)
            self._gif = []


class TimelineExplainer:
    """Writes the explanations of a timeline's windows (module docstring).

    Args:
        predictor: a `serving.predictor` client.
        model, version: the served model.
        out_dir: output folder (created).
        name: file-name stem.
        every: explain every `every`th window.
        block: the block shown in the overlay (default: the deepest).
        gif: write the overlay as a GIF even when MP4 can be written.
    """

    def __init__(
        self, predictor, model, out_dir, name, every=1, version=None, block=None, gif=False
    ):
        self.predictor, self.model, self.version = predictor, model, version
        self.codecs = () if gif else None
        self.every, self.block = every, block
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.summary_path = self.out_dir / f"{name}_explain.jsonl"
        self._summary = open(self.summary_path, "w", encoding="utf-8")
        self.video, self._shown_until = None, None
        self.count = 0

    def add(self, result, clip):
        window = result.window
        if window.index % self.every:
            return
        outputs, _ = self.predictor.predict_with_version(
            self.model,
            {names.CLIPS_INPUT: clip[None]},
            signature=names.EXPLAIN,
            version=self.version,
        )
        if names.MAPS_OUTPUT not in outputs or names.BLOCK_NAMES_OUTPUT not in outputs:
            raise ValueError(
                f"Model {self.model!r}: the '{names.EXPLAIN}' signature returned no "
                "`maps` / `block_names`."
            )
        maps = np.asarray(outputs[names.MAPS_OUTPUT][0], np.float32)  # [blocks, T, S, S]
        blocks = [
            b.decode() if isinstance(b, bytes) else str(b)
            for b in outputs[names.BLOCK_NAMES_OUTPUT][0]
        ]
        block = self.block or blocks[-1]
        if block not in blocks:
            raise ValueError(f"Unknown block {block!r}. The model's blocks: {', '.join(blocks)}.")
        maps_file = self.out_dir / f"{self.name}_w{window.index:05d}_maps.npz"
        np.savez_compressed(
            maps_file,
            maps=maps.astype(np.float16),
            block_names=np.array(blocks),
            start=window.start,
            end=window.end,
        )
        guesses = self._guesses(outputs, blocks, result)
        record = {
            "index": window.index,
            "start": round(window.start, 3),
            "end": round(window.end, 3),
            "class": result.top_k[0][0],
            "probability": round(result.top_k[0][1], 6),
            "blocks": guesses,
            "maps": maps_file.name,
        }
        self._summary.write(json.dumps(record) + "\n")
        self._summary.flush()
        self._draw(result, clip, maps[blocks.index(block)], block, guesses[blocks.index(block)])
        self.count += 1

    def _guesses(self, outputs, blocks, result):
        names_of = dict(zip(range(len(result.probabilities)), self._class_names(result)))
        classes = np.asarray(outputs.get("block_classes", np.zeros((1, len(blocks)))))[0]
        confidences = np.asarray(outputs.get("block_confidences", np.zeros((1, len(blocks)))))[0]
        return [
            {
                "block": b,
                "guess": names_of.get(int(c), str(int(c))),
                "confidence": round(float(p), 4),
            }
            for b, c, p in zip(blocks, classes, confidences)
        ]

    def _class_names(self, result):
        return self.predictor.class_names(
            self.model, range(len(result.probabilities)), result.model_version
        )

    def _draw(self, result, clip, maps, block, guess):
        window = result.window
        t, size = maps.shape[0], maps.shape[-1]
        step = (window.end - window.start) / t  # seconds per clip frame
        if self.video is None:
            fps = 1.0 / step if step > 0 else 8.0
            self.video = OverlayVideo(self.out_dir / self.name, fps, self.codecs)
        crops = centre_crops(clip, size)
        first = 0
        if self._shown_until is not None:  # only the frames not shown yet
            first = min(t - 1, max(0, int(np.ceil((self._shown_until - window.start) / step))))
        label, probability = result.top_k[0]
        scale = max(1, -(-160 // size))
        images = render.render_animation(
            crops,
            maps,
            caption=[
                f"{window.start + first * step:7.2f} s  {label} {probability:.2f}",
                f"{block}: {guess['guess']} {guess['confidence']:.2f}",
            ],
            scale=scale,
        )
        for image in images[first:]:
            self.video.add(image)
        self._shown_until = window.end

    def close(self):
        self._summary.close()
        if self.video is not None:
            self.video.close()

    @property
    def files(self):
        return [self.summary_path] + ([self.video.path] if self.video is not None else [])


__all__ = ["MAX_GIF_FRAMES", "OverlayVideo", "TimelineExplainer", "centre_crops"]
