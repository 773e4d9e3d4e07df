"""Rendering of class-evidence maps: heat-map overlays, a PNG grid, a GIF.

The style of Saliency Tubes (Stergiou et al. 2019): a JET colour map of the
normalised evidence blended at half weight over the frame; optionally the
"focus" view, which leaves the frame untouched where the evidence is below a
threshold (0.2). Colours come from matplotlib's `jet`; layout and text are
drawn with Pillow so every image has an exact, predictable size.

Example:

>>> import numpy as np
>>> frames = np.zeros((8, 32, 32, 3), "uint8")
>>> heat = np.linspace(0, 1, 8 * 32 * 32).reshape(8, 32, 32)
>>> overlay(frames[0], heat[0]).shape
(32, 32, 3)
>>> grid = render_grid(frames, [("stage1", heat, "guess: run 0.80")],
...                    title=["prediction: run 0.91"], num_frames=4, scale=2)
>>> grid.size == grid_size(32, 32, num_blocks=1, num_frames=4, scale=2,
...                        title_lines=1)
True
"""

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Width of the text column on the left of the grid, in pixels.
LABEL_WIDTH = 200
#: Height of one line of text (font size + spacing), in pixels.
LINE_HEIGHT = 16
FONT_SIZE = 12
PADDING = 4
#: Height of the colour bar at the bottom of the grid.
COLORBAR_HEIGHT = 12
#: Text lines above each GIF frame.
GIF_CAPTION_LINES = 2

_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)


def colorize(heat):
    """JET colours `uint8 [..., 3]` of evidence values in `[0, 1]`."""
    heat = np.clip(np.asarray(heat, dtype="float32"), 0.0, 1.0)
    rgba = matplotlib.colormaps["jet"](heat)
    return np.round(rgba[..., :3] * 255).astype("uint8")


def overlay(frame, heat, alpha=0.5, threshold=None):
    """A frame with its evidence map blended over it.

    Args:
        frame: uint8 `[H, W, 3]`.
        heat: float `[H, W]` in `[0, 1]`.
        alpha: weight of the colour map (0.5: Saliency Tubes' half weight).
        threshold: `None`, or the "focus" threshold: where `heat` is below
            it the frame is left as it is.

    Returns:
        uint8 `[H, W, 3]`.
    """
    frame = np.asarray(frame)
    heat = np.asarray(heat)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            "Invalid value for argument `frame`. Expected uint8 [H, W, 3]. "
            f"Received: shape={frame.shape}, dtype={frame.dtype}"
        )
    if heat.shape != frame.shape[:2]:
        raise ValueError(
            "Invalid value for argument `heat`. Expected the frame's shape "
            f"{frame.shape[:2]}. Received: heat.shape={heat.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            "Invalid value for argument `alpha`. Expected a float between 0 "
            f"and 1. Received: alpha={alpha!r}"
        )
    blended = (1.0 - alpha) * frame + alpha * colorize(heat).astype("float32")
    if threshold is not None:
        blended = np.where((heat >= threshold)[..., None], blended, frame)
    return np.clip(np.round(blended), 0, 255).astype("uint8")


def frame_indices(num_total, num_frames):
    """`num_frames` evenly spaced frame indices of `range(num_total)` (fewer
    when the clip is shorter)."""
    if num_frames < 1:
        raise ValueError(
            "Invalid value for argument `num_frames`. Expected a positive "
            f"int. Received: num_frames={num_frames!r}"
        )
    count = min(num_frames, num_total)
    return np.unique(np.round(np.linspace(0, num_total - 1, count)).astype(int))


def grid_size(height, width, num_blocks, num_frames, scale, title_lines):
    """`(width, height)` in pixels of the image `render_grid` draws."""
    header = title_lines * LINE_HEIGHT + LINE_HEIGHT + 2 * PADDING
    footer = COLORBAR_HEIGHT + LINE_HEIGHT + 2 * PADDING
    return (
        LABEL_WIDTH + num_frames * width * scale,
        header + (num_blocks + 1) * height * scale + footer,
    )


def render_grid(frames, rows, title=(), num_frames=8, scale=2, alpha=0.5, threshold=None):
    """A grid: the clip's frames on top, then one row of overlays per block.

    Args:
        frames: uint8 `[T, H, W, 3]`, the clip as the model saw it.
        rows: sequence of `(block_name, maps [T, H, W] in [0, 1], label)`
            with `label` a short text (e.g. the block's guess and
            confidence; lines separated by `\\n`).
        title: lines of text above the grid (e.g. the model's top classes).
        num_frames: columns: evenly sampled frames of the clip.
        scale: integer up-scaling of every frame.
        alpha, threshold: as in `overlay`.

    Returns:
        a `PIL.Image.Image` of size `grid_size(...)`.
    """
    frames = _check_frames(frames)
    _check_scale(scale)
    t, h, w = frames.shape[:3]
    columns = frame_indices(t, num_frames)
    title = list(title)
    size = grid_size(h, w, len(rows), len(columns), scale, len(title))
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    y = PADDING
    for line in title:
        draw.text((PADDING, y), line, fill=_TEXT, font=font)
        y += LINE_HEIGHT
    tile_w, tile_h = w * scale, h * scale
    for col, index in enumerate(columns):
        draw.text(
            (LABEL_WIDTH + col * tile_w + PADDING, y), f"frame {index}", fill=_TEXT, font=font
        )
    y += LINE_HEIGHT + PADDING
    grid_rows = [("clip", None, "input frames")] + list(rows)
    for name, maps, label in grid_rows:
        if maps is not None:
            maps = np.asarray(maps)
            if maps.shape != frames.shape[:3]:
                raise ValueError(
                    f"The maps of row '{name}' have shape {maps.shape}; "
                    f"expected the clip's (T, H, W) = {frames.shape[:3]}."
                )
        lines = [name] + str(label).split("\n")
        for i, line in enumerate(lines):
            draw.text(
                (PADDING, y + PADDING + i * LINE_HEIGHT),
                _fit(line, font, LABEL_WIDTH - 2 * PADDING),
                fill=_TEXT,
                font=font,
            )
        for col, index in enumerate(columns):
            tile = frames[index]
            if maps is not None:
                tile = overlay(tile, maps[index], alpha, threshold)
            image.paste(_upscale(tile, scale), (LABEL_WIDTH + col * tile_w, y))
        y += tile_h
    _draw_colorbar(draw, image, y + PADDING, font, threshold)
    return image


def render_animation(frames, maps, caption=(), scale=2, alpha=0.5, threshold=None):
    """The clip with one block's overlay, one image per frame (for a GIF).

    Args:
        frames: uint8 `[T, H, W, 3]`.
        maps: float `[T, H, W]` in `[0, 1]` (one block's evidence).
        caption: up to `GIF_CAPTION_LINES` lines drawn above every frame;
            the frame number starts the last one.
        scale, alpha, threshold: as in `render_grid`.

    Returns:
        a list of `T` `PIL.Image.Image`, each of size
        `animation_size(H, W, scale)`.
    """
    frames = _check_frames(frames)
    _check_scale(scale)
    maps = np.asarray(maps)
    if maps.shape != frames.shape[:3]:
        raise ValueError(
            f"Invalid value for argument `maps`. Expected the clip's "
            f"(T, H, W) = {frames.shape[:3]}. Received: maps.shape={maps.shape}"
        )
    caption = list(caption)[:GIF_CAPTION_LINES]
    caption += [""] * (GIF_CAPTION_LINES - len(caption))
    t, h, w = frames.shape[:3]
    font = _font()
    images = []
    for index in range(t):
        image = Image.new("RGB", animation_size(h, w, scale), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        lines = caption[:-1] + [f"frame {index + 1}/{t}  {caption[-1]}".strip()]
        for i, line in enumerate(lines):
            draw.text(
                (2, 2 + i * LINE_HEIGHT), _fit(line, font, w * scale - 4), fill=_TEXT, font=font
            )
        tile = overlay(frames[index], maps[index], alpha, threshold)
        image.paste(_upscale(tile, scale), (0, GIF_CAPTION_LINES * LINE_HEIGHT + 4))
        images.append(image)
    return images


def animation_size(height, width, scale):
    """`(width, height)` of each image `render_animation` draws."""
    return width * scale, height * scale + GIF_CAPTION_LINES * LINE_HEIGHT + 4


def save_png(image, path):
    """Writes a `PIL` image as PNG."""
    image.save(path, format="PNG")


def save_gif(images, path, fps=8.0):
    """Writes images as an animated GIF that loops forever, `fps` frames per
    second (GIF timing has a 10 ms resolution)."""
    if not images:
        raise ValueError("No images to write to the GIF.")
    if not fps > 0:
        raise ValueError(
            f"Invalid value for argument `fps`. Expected a positive number. Received: fps={fps!r}"
        )
    duration = max(20, int(round(1000.0 / fps / 10.0)) * 10)
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=list(images[1:]),
        duration=duration,
        loop=0,
        disposal=1,
    )


def _draw_colorbar(draw, image, y, font, threshold):
    width = image.size[0] - LABEL_WIDTH
    ramp = np.linspace(0.0, 1.0, width)
    colours = colorize(ramp)
    if threshold is not None:
        colours[ramp < threshold] = 255  # hidden in the focus view
    bar = np.repeat(colours[None], COLORBAR_HEIGHT, axis=0)
    image.paste(Image.fromarray(bar), (LABEL_WIDTH, y))
    draw.text((PADDING, y), "class evidence", fill=_TEXT, font=font)
    text_y = y + COLORBAR_HEIGHT
    draw.text((LABEL_WIDTH, text_y), "0 (least)", fill=_TEXT, font=font)
    right = "1 (most)"
    draw.text(
        (image.size[0] - _text_width(font, right) - PADDING, text_y), right, fill=_TEXT, font=font
    )
    if threshold is not None:
        draw.text(
            (LABEL_WIDTH + int(threshold * width) + 2, text_y),
            f"focus >= {threshold:g}",
            fill=_TEXT,
            font=font,
        )


def _check_frames(frames):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            "Invalid value for argument `frames`. Expected uint8 "
            f"[T, H, W, 3]. Received: shape={frames.shape}, dtype={frames.dtype}"
        )
    return frames


def _check_scale(scale):
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(
            "Invalid value for argument `scale`. Expected a positive int. "
            f"Received: scale={scale!r}"
        )


def _upscale(tile, scale):
    image = Image.fromarray(tile)
    if scale == 1:
        return image
    return image.resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.Resampling.NEAREST)


def _font():
    return ImageFont.load_default(size=FONT_SIZE)


def _text_width(font, text):
    left, _, right, _ = font.getbbox(text)
    return right - left


def _fit(text, font, width):
    """`text`, cut with an ellipsis to fit `width` pixels."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "…") > width:
        text = text[:-1]
    return text + "…"
