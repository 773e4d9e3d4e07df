"""Tests of `clipspec.render`: overlays, the PNG grid and the GIF."""

import numpy as np
import pytest
from PIL import Image

from clipspec import render as viz


def test_colorize_is_matplotlib_jet_and_overlay_blends_at_half_weight():
    # JET runs dark blue -> red: 0 is (0, 0, 127.5), 1 is (127.5, 0, 0).
    np.testing.assert_array_equal(viz.colorize([0.0, 1.0]), [[0, 0, 128], [128, 0, 0]])
    frame = np.full((2, 3, 3), 100, "uint8")
    heat = np.array([[0.0, 0.1, 1.0], [1.0, 0.5, 0.0]])
    out = viz.overlay(frame, heat)
    jet = viz.colorize(heat).astype(float)
    np.testing.assert_array_equal(out, np.round(0.5 * 100 + 0.5 * jet))
    # Focus view: below the threshold the frame is left untouched.
    focused = viz.overlay(frame, heat, threshold=0.2)
    hidden = heat < 0.2
    np.testing.assert_array_equal(focused[hidden], frame[hidden])
    np.testing.assert_array_equal(focused[~hidden], out[~hidden])


def test_overlay_and_grid_reject_bad_inputs():
    with pytest.raises(ValueError, match=r"Expected uint8 \[H, W, 3\]"):
        viz.overlay(np.zeros((4, 4, 3), "float32"), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"Expected the frame's shape \(4, 4\)"):
        viz.overlay(np.zeros((4, 4, 3), "uint8"), np.zeros((4, 5)))
    frames = np.zeros((4, 8, 8, 3), "uint8")
    with pytest.raises(ValueError, match="row 'b1'"):
        viz.render_grid(frames, [("b1", np.zeros((4, 8, 9)), "x")])
    with pytest.raises(ValueError, match="`scale`"):
        viz.render_grid(frames, [], scale=0)
    with pytest.raises(ValueError, match="`fps`"):
        viz.save_gif([Image.new("RGB", (2, 2))], "unused.gif", fps=0)


def test_frame_indices_are_evenly_spaced():
    assert viz.frame_indices(16, 4).tolist() == [0, 5, 10, 15]
    assert viz.frame_indices(3, 8).tolist() == [0, 1, 2]


def _clip_and_maps(t=6, h=10, w=12):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (t, h, w, 3), dtype="uint8")
    maps = rng.random((t, h, w)).astype("float32")
    return frames, maps


def test_grid_png_has_the_expected_size_and_pixels(tmp_path):
    frames, maps = _clip_and_maps()
    rows = [("stage1", maps, "guess: a 0.50"), ("stage2", 1 - maps, "guess: b")]
    image = viz.render_grid(frames, rows, title=["line 1", "line 2"], num_frames=3, scale=2)
    path = tmp_path / "grid.png"
    viz.save_png(image, path)
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"
        assert loaded.size == (
            viz.LABEL_WIDTH + 3 * 12 * 2,
            (2 * viz.LINE_HEIGHT + viz.LINE_HEIGHT + 2 * viz.PADDING)
            + 3 * 10 * 2
            + viz.COLORBAR_HEIGHT
            + viz.LINE_HEIGHT
            + 2 * viz.PADDING,
        )
        pixels = np.asarray(loaded.convert("RGB"))
    # Row 1 (first block), column 2 (frame index 5 of 0, 2/3, 5): the
    # overlay of that frame, up-scaled x2 by pixel repetition.
    top = 3 * viz.LINE_HEIGHT + 2 * viz.PADDING + 1 * 20
    left = viz.LABEL_WIDTH + 2 * 24
    tile = pixels[top : top + 20, left : left + 24]
    expected = viz.overlay(frames[5], maps[5]).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(tile, expected)
    # Row 0 shows the raw frames.
    raw = pixels[top - 20 : top, viz.LABEL_WIDTH : viz.LABEL_WIDTH + 24]
    np.testing.assert_array_equal(raw, frames[0].repeat(2, 0).repeat(2, 1))


def test_gif_has_one_frame_per_clip_frame_of_the_expected_size(tmp_path):
    frames, maps = _clip_and_maps(t=5, h=16, w=20)
    images = viz.render_animation(
        frames, maps, caption=["stage3: run 0.7", "maps for run"], scale=3, threshold=0.2
    )
    path = tmp_path / "clip.gif"
    viz.save_gif(images, path, fps=10)
    with Image.open(path) as loaded:
        assert loaded.format == "GIF"
        assert loaded.n_frames == 5
        assert (
            loaded.size
            == viz.animation_size(16, 20, 3)
            == (60, 48 + viz.GIF_CAPTION_LINES * viz.LINE_HEIGHT + 4)
        )
        assert loaded.info["duration"] == 100
        assert loaded.info["loop"] == 0
        loaded.seek(4)
        last = np.asarray(loaded.convert("RGB"))
    # The last frame's overlay (GIF palettes are lossy: compare loosely).
    top = viz.GIF_CAPTION_LINES * viz.LINE_HEIGHT + 4
    expected = viz.overlay(frames[4], maps[4], threshold=0.2)
    got = last[top::3, ::3][:16, :20].astype(int)
    assert np.abs(got - expected).mean() < 12
