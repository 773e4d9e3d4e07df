"""Synthetic action clips: moving shapes whose class is the motion.

Each video shows one shape (circle, square, triangle or diamond) moving in a
way that names its class: `left`, `right`, `up`, `down`, `clockwise`,
`counterclockwise`, `zoom_in`, `zoom_out`, the four diagonals and two
back-and-forth shakes (`MOTIONS`, in that order; `classes=N` takes the first
N). Start position, phase, shape, colour, size and speed are random, and
straight motions wrap around the frame edges, so any single frame (the first
included) is distributed alike for all classes: a model has to use time. The videos are
real H.264 `.mp4` files written with PyAV in the folder layout
`out_dir/<class>/<class>_<i:04d>.mp4`, so the real decode path is exercised.

Difficulty knobs (all seeded): `distractors` (extra shapes wandering at
random), `noise` (Gaussian pixel noise), `camera_jitter` (per-frame global
shake), `size_range`, `speed_range`, `shapes`, `random_colour`. `PRESETS`
holds `easy`, `medium` and `hard` settings. The same `seed` and settings give
the same pixels; video `i` of a class does not depend on how many classes or
videos are written.

Example:

>>> from training.data.synthetic import write_synthetic_dataset
>>> dataset = write_synthetic_dataset("synthetic/", classes=6, per_class=20)
>>> dataset.class_names
['clockwise', 'counterclockwise', 'down', 'left', 'right', 'up']
"""

import json
import os
import pathlib

import numpy as np

MOTIONS = (
    "left",
    "right",
    "up",
    "down",
    "clockwise",
    "counterclockwise",
    "zoom_in",
    "zoom_out",
    "up_left",
    "up_right",
    "down_left",
    "down_right",
    "shake_horizontal",
    "shake_vertical",
)
SHAPES = ("circle", "square", "triangle", "diamond")

DIFFICULTY_DEFAULTS = {
    "shapes": SHAPES,
    "random_colour": True,
    "size_range": (0.16, 0.26),
    "speed_range": (0.35, 0.6),
    "distractors": 0,
    "noise": 0.0,
    "camera_jitter": 0.0,
}
PRESETS = {
    "easy": {},
    "medium": {
        "distractors": 1,
        "noise": 6.0,
        "camera_jitter": 0.5,
        "size_range": (0.12, 0.24),
        "speed_range": (0.3, 0.6),
    },
    "hard": {
        "distractors": 3,
        "noise": 16.0,
        "camera_jitter": 1.5,
        "size_range": (0.1, 0.2),
        "speed_range": (0.2, 0.6),
    },
}

_DIRECTIONS = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up_left": (-1, -1),
    "up_right": (1, -1),
    "down_left": (-1, 1),
    "down_right": (1, 1),
}
# Zooms start at a size factor in _ZOOM and grow (shrink) by _ZOOM_GROWTH.
_ZOOM = (0.6, 1.4)
_ZOOM_GROWTH = 1.8


def _check_range(name, value, low, high):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        a = b = None
    if a is None or not low <= a <= b <= high:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a pair (min, max) "
            f"with {low} <= min <= max <= {high}. Received: {name}={value!r}"
        )
    return a, b


def difficulty_settings(preset="easy", **overrides):
    """The full difficulty settings: `PRESETS[preset]` updated by `overrides`.

    Raises a `TypeError` for an unknown knob and `ValueError` for a bad value.
    """
    if preset not in PRESETS:
        raise ValueError(
            f"Invalid value for argument `preset`. Expected one of "
            f"{', '.join(PRESETS)}. Received: preset={preset!r}"
        )
    unknown = sorted(set(overrides) - set(DIFFICULTY_DEFAULTS))
    if unknown:
        raise TypeError(
            f"Unknown difficulty setting(s) {', '.join(unknown)}; known: "
            f"{', '.join(DIFFICULTY_DEFAULTS)}."
        )
    settings = {
        **DIFFICULTY_DEFAULTS,
        **PRESETS[preset],
        **{k: v for k, v in overrides.items() if v is not None},
    }
    shapes = settings["shapes"]
    if isinstance(shapes, str):
        shapes = tuple(s.strip() for s in shapes.split(",") if s.strip())
    if not shapes or any(s not in SHAPES for s in shapes):
        raise ValueError(
            "Invalid value for argument `shapes`. Expected a non-empty list "
            f"from {', '.join(SHAPES)}. Received: shapes={settings['shapes']!r}"
        )
    settings["shapes"] = tuple(shapes)
    settings["size_range"] = _check_range("size_range", settings["size_range"], 0.04, 0.4)
    settings["speed_range"] = _check_range("speed_range", settings["speed_range"], 0.05, 1.0)
    for name in ("distractors",):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected an int >= 0. "
                f"Received: {name}={value!r}"
            )
    for name in ("noise", "camera_jitter"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected a number >= 0. "
                f"Received: {name}={value!r}"
            )
        settings[name] = float(value)
    settings["random_colour"] = bool(settings["random_colour"])
    return settings


# --------------------------------------------------------------------------
# Trajectories: centre (x, y) in [0, 1] frame units and a size factor
# --------------------------------------------------------------------------
def _trajectory(motion, t, rng, radius, speed):
    """`(x, y, scale)` arrays over times `t` in [0, 1] for the target shape.

    Linear motions wrap around the frame edges (the frame is a torus) and
    start anywhere, circles start at a random phase and zooms at a random
    size, so that the first frame (or any one frame) is distributed the same
    way for every class: only the change over time tells the class.
    """
    ones = np.ones_like(t)
    if motion in _DIRECTIONS:
        dx, dy = np.array(_DIRECTIONS[motion], float) / np.hypot(*_DIRECTIONS[motion])
        x0, y0 = rng.uniform(0.0, 1.0, size=2)
        return (x0 + dx * speed * t) % 1.0, (y0 + dy * speed * t) % 1.0, ones
    margin = radius + 0.02
    room = 1.0 - 2 * margin
    if motion in ("clockwise", "counterclockwise"):
        r = min(rng.uniform(0.14, 0.22), room / 2)
        sweep = float(np.clip(speed / r, np.pi, 1.9 * np.pi))
        cx = rng.uniform(margin + r, 1 - margin - r)
        cy = rng.uniform(margin + r, 1 - margin - r)
        phase = rng.uniform(0, 2 * np.pi)
        # Image y grows downwards, so an increasing angle turns clockwise.
        angle = phase + (sweep if motion == "clockwise" else -sweep) * t
        return cx + r * np.cos(angle), cy + r * np.sin(angle), ones
    if motion in ("zoom_in", "zoom_out"):
        start = np.exp(rng.uniform(np.log(_ZOOM[0]), np.log(_ZOOM[1])))
        growth = _ZOOM_GROWTH if motion == "zoom_in" else 1.0 / _ZOOM_GROWTH
        scale = start * growth**t
        big = radius * float(scale.max()) + 0.02
        x0, y0 = rng.uniform(min(big, 0.5), max(1 - big, 0.5), size=2)
        return x0 * ones, y0 * ones, scale
    if motion in ("shake_horizontal", "shake_vertical"):
        amplitude = min(speed / 2, room / 2)
        cycles = rng.uniform(1.5, 2.5)
        phase = rng.uniform(0, 2 * np.pi)
        c0 = rng.uniform(margin + amplitude, 1 - margin - amplitude)
        other = rng.uniform(margin, 1 - margin)
        wave = c0 + amplitude * np.sin(phase + 2 * np.pi * cycles * t)
        if motion == "shake_horizontal":
            return wave, other * ones, ones
        return other * ones, wave, ones
    raise ValueError(f"Unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


def _random_walk(t, rng, radius):
    """A wandering distractor: smooth random steps, no consistent direction."""
    steps = rng.normal(0.0, 0.015, size=(len(t), 2))
    path = np.cumsum(steps, axis=0) - steps[0]
    start = rng.uniform(radius + 0.05, 1 - radius - 0.05, size=2)
    path = np.clip(start + path, radius, 1 - radius)
    return path[:, 0], path[:, 1], np.ones_like(t)


def _coverage(shape, xx, yy, cx, cy, half):
    """Anti-aliased coverage in [0, 1] of a shape of half-size `half` px."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        distance = np.hypot(dx, dy) - half
    elif shape == "square":
        distance = np.maximum(abs(dx), abs(dy)) - half * 0.9
    elif shape == "diamond":
        distance = (abs(dx) + abs(dy)) / np.sqrt(2) - half * 0.8
    else:  # upward triangle: the largest of three edge distances
        s = half * 1.1
        edges = (
            dy - s * 0.5,
            (np.sqrt(3) / 2) * dx - 0.5 * dy - s * 0.5,
            -(np.sqrt(3) / 2) * dx - 0.5 * dy - s * 0.5,
        )
        distance = np.maximum.reduce(edges)
    return np.clip(0.5 - distance, 0.0, 1.0)


def render_video(motion, rng, frames=32, size=64, settings=None):
    """One synthetic video as uint8 `[frames, size, size, 3]`."""
    settings = settings or difficulty_settings()
    t = np.linspace(0.0, 1.0, frames)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    def colour():
        if settings["random_colour"]:
            return rng.uniform(110, 255, size=3)
        return np.full(3, 255.0)

    background = rng.uniform(0, 60, size=3) if settings["random_colour"] else np.zeros(3)
    objects = []
    diameter = rng.uniform(*settings["size_range"])
    speed = rng.uniform(*settings["speed_range"])
    target = _trajectory(motion, t, rng, diameter / 2, speed)
    objects.append((rng.choice(settings["shapes"]), diameter, colour(), target))
    for _ in range(settings["distractors"]):
        d = rng.uniform(*settings["size_range"])
        objects.insert(
            0, (rng.choice(settings["shapes"]), d, colour(), _random_walk(t, rng, d / 2))
        )
    shake = rng.normal(0.0, settings["camera_jitter"], size=(frames, 2))
    video = np.empty((frames, size, size, 3), np.float32)
    for f in range(frames):
        image = np.broadcast_to(background, (size, size, 3)).astype(np.float32)
        for shape, d, rgb, (x, y, scale) in objects:
            half = d * size / 2 * scale[f]
            cx, cy = x[f] * size + shake[f, 0], y[f] * size + shake[f, 1]
            # Copies one frame away draw the part of a wrapping shape that
            # re-enters on the other side.
            for ox in (-size, 0, size):
                for oy in (-size, 0, size):
                    if (
                        -2 * half <= cx + ox <= size + 2 * half
                        and -2 * half <= cy + oy <= size + 2 * half
                    ):
                        alpha = _coverage(shape, xx, yy, cx + ox, cy + oy, half)
                        image = image * (1 - alpha[..., None]) + rgb * alpha[..., None]
        video[f] = image
    if settings["noise"] > 0:
        video += rng.normal(0.0, settings["noise"], size=video.shape)
    return np.clip(np.round(video), 0, 255).astype(np.uint8)


def write_video(path, frames, fps=25, crf=18):
    """Writes uint8 RGB `frames` `[T, H, W, 3]` to an H.264 `.mp4` with PyAV."""
    import av

    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even frame sizes; got {width}x{height}.")
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_synthetic_dataset(
    out_dir,
    classes=6,
    per_class=20,
    frames=32,
    size=64,
    fps=25,
    seed=0,
    test_fraction=0.2,
    preset="easy",
    progress=False,
    **difficulty,
):
    """Writes a synthetic motion dataset in the folder layout.

    Args:
        out_dir: output folder (created; existing videos are overwritten).
        classes: number of motion classes, 2 to `len(MOTIONS)`; the first ones
            of `MOTIONS`.
        per_class: videos per class.
        frames: frames per video.
        size: frame side in pixels (even, >= 16).
        fps: frame rate written into the files.
        seed: int; the same seed and settings give the same videos.
        test_fraction: train/test split of the returned dataset.
        preset: `"easy"`, `"medium"` or `"hard"` difficulty defaults.
        progress: show a tqdm progress bar.
        **difficulty: overrides of the preset: `distractors`, `noise`,
            `camera_jitter`, `size_range`, `speed_range`, `shapes`,
            `random_colour`.

    Returns:
        the `VideoDataset` of the written folder (`layouts.load_folder`).
    """
    from training.data.layouts import load_folder

    checks = {
        "classes": (classes, 2, len(MOTIONS)),
        "per_class": (per_class, 1, None),
        "frames": (frames, 2, None),
        "size": (size, 16, None),
        "fps": (fps, 1, 240),
    }
    for name, (value, low, high) in checks.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"between {low} and {high}" if high else f">= {low}"
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected an int {bound}. "
                f"Received: {name}={value!r}"
            )
    if size % 2:
        raise ValueError(
            f"Invalid value for argument `size`. Expected an even int (H.264 "
            f"frames). Received: size={size}"
        )
    settings = difficulty_settings(preset, **difficulty)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (label, motion, i)
        for label, motion in enumerate(MOTIONS[:classes])
        for i in range(per_class)
    ]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="synthetic videos", unit="video")
    for label, motion, i in jobs:
        rng = np.random.default_rng([int(seed), label, i])
        video = render_video(motion, rng, frames, size, settings)
        folder = out_dir / motion
        folder.mkdir(exist_ok=True)
        write_video(folder / f"{motion}_{i:04d}.mp4", video, fps)
    info = {
        "classes": list(MOTIONS[:classes]),
        "per_class": per_class,
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
        "preset": preset,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
    }
    (out_dir / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    return load_folder(out_dir, test_fraction=test_fraction, seed=seed)
