"""The clip contract: `ClipFormat` and `RunDir` (what every consumer reads)."""

import json

import keras
import pytest

from clipspec.format import DEFAULT_MEAN, ClipFormat, default_short_side
from clipspec.rundir import RunDir, RunDirError, clip_format_of_model
from cliutil import partial_path, write_json


# --------------------------------------------------------------------------
# ClipFormat
# --------------------------------------------------------------------------
def test_defaults_and_derived_fields():
    fmt = ClipFormat(class_names=["a", "b"])
    assert (fmt.clip_length, fmt.stride, fmt.crop_size) == (16, 2, 112)
    assert fmt.short_side == 128 and fmt.num_views == 10 and fmt.num_classes == 2
    assert fmt.input_shape == (16, 112, 112, 3) and fmt.mean == DEFAULT_MEAN
    # Hara et al.'s 128 for 112, in integer arithmetic
    assert [default_short_side(s) for s in (112, 56, 64, 224, 32)] == [128, 64, 73, 256, 37]


def test_json_round_trip_and_unknown_fields():
    fmt = ClipFormat(
        clip_length=8,
        stride=3,
        crop_size=56,
        short_side=80,
        num_clips=4,
        num_crops=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=("jump", "run"),
        short_video="pad",
    )
    assert ClipFormat.from_json(fmt.to_json()) == fmt
    values = json.loads(fmt.to_json())
    assert values["format_version"] == 1 and values["class_names"] == ["jump", "run"]
    with pytest.raises(ValueError, match="unknown clip format field.*frames_per_clip"):
        ClipFormat.from_dict({**fmt.to_dict(), "frames_per_clip": 8}, "x.json")
    with pytest.raises(ValueError, match="x.json: clip format version 7"):
        ClipFormat.from_dict({"format_version": 7}, "x.json")
    with pytest.raises(ValueError, match="x.json: not valid JSON"):
        ClipFormat.from_json("{", "x.json")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"clip_length": 0}, "`clip_length`. Expected an int >= 1"),
        ({"stride": True}, "`stride`"),
        ({"num_crops": 2}, "`num_crops`. Expected 1 or 3"),
        ({"crop_size": 112, "short_side": 100}, "Expected at least crop_size=112"),
        ({"std": (0.2, 0.0, 0.2)}, "`std`. Expected 3 positive floats"),
        ({"mean": (0.5, 0.5)}, "`mean`. Expected 3 floats"),
        ({"class_names": ["a", "a"]}, "distinct"),
        ({"class_names": ["a", "b\nc"]}, "line breaks"),
        ({"class_names": "ab"}, "Expected a list of class names"),
        ({"short_video": "mirror"}, "`short_video`"),
    ],
)
def test_invalid_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        ClipFormat(**fields)


def test_replace_ignores_none_and_keeps_the_short_side_consistent():
    fmt = ClipFormat(crop_size=112)
    assert fmt.replace(stride=None, num_clips=None) == fmt
    assert fmt.replace(num_clips=3).num_clips == 3
    assert fmt.replace(crop_size=224).short_side == 256  # grows with the crop
    assert fmt.replace(crop_size=56).short_side == 128  # the data's stays
    assert fmt.replace(crop_size=56, short_side=64).short_side == 64


def test_from_run_config_of_older_runs():
    config = {
        "clip_length": 8,
        "crop_size": 32,
        "stride": 1,
        "mean": [0.1] * 3,
        "std": [0.2] * 3,
        "class_names": ["a"],
        "epochs": 30,
    }
    fmt = ClipFormat.from_run_config(config)
    assert (fmt.clip_length, fmt.crop_size, fmt.stride, fmt.mean) == (8, 32, 1, (0.1,) * 3)
    # no clip shape: the config's input_shape, else the model's
    assert ClipFormat.from_run_config({"input_shape": [4, 24, 24, 3]}).input_shape == (4, 24, 24, 3)
    assert ClipFormat.from_run_config({}, input_shape=(6, 40, 40, 3)).crop_size == 40


# --------------------------------------------------------------------------
# RunDir
# --------------------------------------------------------------------------
def _model(shape=(4, 16, 16, 3), classes=2):
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def test_for_model_finds_the_run_of_a_model_file(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    write_json(run / "config.json", {"clip_length": 4, "crop_size": 16, "class_names": ["a", "b"]})
    for name in ("best.keras", "final.keras", "checkpoints/epoch_002.keras"):
        (run / name).write_text("x")
    assert RunDir.for_model(run)[1].name == "best.keras"
    found, path = RunDir.for_model(run / "checkpoints" / "epoch_002.keras")
    assert found.path == run.absolute() and path.name == "epoch_002.keras"
    (tmp_path / "loose.keras").write_text("x")
    assert RunDir.for_model(tmp_path / "loose.keras")[0] is None
    (run / "best.keras").unlink()
    assert RunDir.for_model(run)[1].name == "final.keras"
    (run / "final.keras").unlink()
    with pytest.raises(RunDirError, match="neither best.keras nor final.keras"):
        RunDir.for_model(run)
    with pytest.raises(RunDirError, match="no such model file or run directory"):
        RunDir.for_model(tmp_path / "missing.keras")
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir(tmp_path / "nowhere")


def test_clip_format_file_wins_and_is_checked_against_the_model(tmp_path):
    run = RunDir(tmp_path, create=True)
    run.write_config({"clip_length": 8, "crop_size": 32, "class_names": ["a", "b"]})
    assert run.clip_format.clip_length == 8  # from config.json (older runs)
    fmt = ClipFormat(clip_length=4, crop_size=16, stride=3, class_names=["x", "y"])
    run.write_clip_format(fmt)
    assert RunDir(tmp_path).clip_format == fmt
    assert run.clip_format_for(_model()) == fmt
    with pytest.raises(
        RunDirError,
        match=r"clips of \(4, 16, 16, 3\) but model .* "
        r"takes \(8, 16, 16, 3\)",
    ):
        run.clip_format_for(_model((8, 16, 16, 3)))
    (tmp_path / "clip_format.json").write_text("{")
    with pytest.raises(ValueError, match="clip_format.json: not valid JSON"):
        _ = RunDir(tmp_path).clip_format


def test_older_config_without_a_clip_shape_takes_the_models(tmp_path):
    run = RunDir(tmp_path, create=True)
    run.write_config({"class_names": ["a", "b"], "stride": 1})
    assert run.clip_format_for(_model((6, 24, 24, 3))).input_shape == (6, 24, 24, 3)


def test_partial_files_of_a_killed_process_are_removed(tmp_path):
    run = RunDir(tmp_path, create=True)
    (tmp_path / "checkpoints").mkdir()
    stale = [
        partial_path(tmp_path / "best.keras"),
        partial_path(tmp_path / "checkpoints" / "epoch_002.keras"),
    ]
    for path in stale + [tmp_path / "best.keras", tmp_path / "notes.partial"]:
        path.write_text("x")
    assert sorted(run.remove_partial_files()) == sorted(p.name for p in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.keras",
        "checkpoints",
        "notes.partial",
    ]


def test_the_clip_format_of_a_model_is_decided_in_one_place(tmp_path):
    """`clip_format_of_model`: a run's format, else the model's clip shape
    with the defaults and no class names (export and explain both ask it)."""
    outside = clip_format_of_model(_model((6, 24, 24, 3), classes=3))
    assert outside == ClipFormat(clip_length=6, crop_size=24)
    assert outside.class_names == ()
    run = RunDir(tmp_path, create=True)
    run.write_config({"clip_length": 4, "crop_size": 16})
    fmt = ClipFormat(clip_length=4, crop_size=16, stride=3, class_names=["x", "y"])
    run.write_clip_format(fmt)
    assert clip_format_of_model(_model(), run) == fmt
    with pytest.raises(ValueError, match=r"takes clips of shape \(4, 16, 8, 3\)"):
        clip_format_of_model(_model((4, 16, 8, 3)))
