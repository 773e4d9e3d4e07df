"""`python -m training.convert` and fine-tuning from its run directory.

A published-format checkpoint (random weights, tiny widths) becomes a run
directory that `training.evaluate` and `training.export` take as is, and
`training.train --init-from` fine-tunes with Class Regularization blocks,
frozen stages and the weights' own normalisation; `training.explain` then
explains the fine-tuned model.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from pretrained_files import hara_shapes, hara_spec, random_state_dict, write_pth
from test_train_support import CLASSES, tiny_config

import keras_classreg
from clipspec import ClipFormat, RunDir
from keras_classreg import models
from keras_classreg.pretrained import load_3d_resnets_pth, read_pth
from training import convert
from training.train import freeze_layers, train

CLIPS = (8, 32, 32, 3)


def _manifest_classes(data):
    with open(f"{data}/manifest.json", encoding="utf-8") as file:
        return json.load(file)["class_names"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2018-release ResNet-18 (shortcut A) .pth of 4 classes, tiny widths."""
    folder = tmp_path_factory.mktemp("pth")
    spec = hara_spec(
        "resnet", 18, (8, 16, 32, 64), stem_filters=8, shortcut="A", num_classes=CLASSES
    )
    state = random_state_dict(hara_shapes(spec), seed=7)
    path = folder / "resnet-18-kinetics.pth"
    write_pth(
        path,
        {
            "arch": "resnet-18",
            "epoch": 200,
            "state_dict": {"module." + name: value for name, value in state.items()},
        },
        layout="legacy",
    )
    return path


@pytest.fixture(scope="module")
def converted(checkpoint, prepared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("converted")
    names = folder / "classes.txt"
    names.write_text("\n".join(_manifest_classes(prepared_data)) + "\n")
    run_dir = folder / "r18"
    assert (
        convert.main(
            [
                "--source",
                "3d-resnets",
                "--weights",
                str(checkpoint),
                "--out",
                str(run_dir),
                "--clip-length",
                "8",
                "--crop-size",
                "32",
                "--class-names",
                str(names),
            ]
        )
        == 0
    )
    return run_dir


@pytest.mark.slow
def test_run_directory(converted, checkpoint, prepared_data, capsys):
    run = RunDir(converted)
    assert run.clip_format == ClipFormat(
        clip_length=8,
        stride=1,
        crop_size=32,
        short_side=32,
        num_clips=10,
        num_crops=1,
        mean=[m / 255 for m in (114.7748, 107.7354, 99.4750)],
        std=[1 / 255] * 3,
        class_names=_manifest_classes(prepared_data),
    )
    assert run.model_path.name == "final.keras"
    config = json.loads((converted / "config.json").read_text())
    assert config["model"] == "resnet18_3d"
    assert config["model_options"]["padding"] == "symmetric"
    assert config["model_options"]["shortcut"] == "A"
    assert config["class_regularization"] is False
    assert config["input_shape"] == list(CLIPS)
    assert (config["clip_length"], config["stride"], config["crop_size"], config["short_side"]) == (
        8,
        1,
        32,
        32,
    )
    np.testing.assert_allclose(np.array(config["mean"]) * 255, [114.7748, 107.7354, 99.4750])
    np.testing.assert_allclose(np.array(config["std"]) * 255, [1, 1, 1])
    assert config["class_names"] == _manifest_classes(prepared_data)
    assert config["pretrained"]["release"] == "2018"
    assert config["pretrained"]["weights"]["loaded"] == 87  # 17 convs, 17 BNs x 4, fc x 2
    model = keras.saving.load_model(converted / "final.keras")
    reference = load_3d_resnets_pth(checkpoint, input_shape=CLIPS).model
    x = np.random.default_rng(0).normal(size=(2, *CLIPS)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-6
    )
    # a second conversion into the same directory is refused
    assert (
        convert.main(
            ["--source", "3d-resnets", "--weights", str(checkpoint), "--out", str(converted)]
        )
        == 2
    )
    assert "already holds final.keras" in capsys.readouterr().err


def test_convert_errors(checkpoint, tmp_path, capsys):
    assert (
        convert.main(
            [
                "--source",
                "kinetics-i3d",
                "--weights",
                str(checkpoint),
                "--out",
                str(tmp_path / "x"),
                "--release",
                "2018",
            ]
        )
        == 2
    )
    assert "apply to --source 3d-resnets only" in capsys.readouterr().err
    assert (
        convert.main(
            [
                "--source",
                "3d-resnets",
                "--weights",
                str(tmp_path / "none.pth"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "No such file" in capsys.readouterr().err


def _damaged_files(checkpoint, folder):
    """The module's 2018-format file cut inside its pickle; the same weights
    in the zip format with one byte of data.pkl flipped; and a zip whose
    data.pkl was cut before zipping."""
    data = checkpoint.read_bytes()
    cut = folder / "cut.pth"
    cut.write_bytes(data[: data.index(b"layer2.")])  # inside the state dict's pickle
    full_zip = folder / "full.pth"
    write_pth(full_zip, read_pth(checkpoint), layout="zip")
    with zipfile.ZipFile(full_zip) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
        (info,) = [i for i in archive.infolist() if i.filename == "full/data.pkl"]
    flipped = bytearray(full_zip.read_bytes())
    flipped[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF
    (folder / "flipped.pth").write_bytes(flipped)
    with zipfile.ZipFile(folder / "cut_pickle.pth", "w") as archive:
        for name, content in records.items():
            archive.writestr(name, content[:-20] if name == "full/data.pkl" else content)
    return {
        "cut.pth": "truncated or damaged",
        "flipped.pth": "damaged zip archive (BadZipFile: Bad CRC-32",
        "cut_pickle.pth": "data.pkl is truncated or damaged",
    }


def test_damaged_weights_are_one_line_errors(checkpoint, tmp_path, capsys):
    for name, expected in _damaged_files(checkpoint, tmp_path).items():
        weights = tmp_path / name
        command = ["--source", "3d-resnets", "--weights", str(weights), "--out"]
        assert convert.main([*command, str(tmp_path / f"out_{name}")]) == 2, name
        line = capsys.readouterr().err
        assert line.startswith("error: ") and line.count("\n") == 1, line
        assert str(weights) in line and expected in line, line
        assert not (tmp_path / f"out_{name}").exists()


@pytest.mark.parametrize("flag", ["--clip-length", "--crop-size", "--conv1-t-stride"])
def test_sizes_below_one_are_refused(checkpoint, tmp_path, capsys, flag):
    command = ["--source", "3d-resnets", "--weights", str(checkpoint), "--out", str(tmp_path / "o")]
    assert convert.main([*command, flag, "0"]) == 2
    line = capsys.readouterr().err
    assert line.startswith("error: ") and line.count("\n") == 1, line
    assert f"{flag} must be an integer >= 1 (got 0)" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_evaluate_and_export_take_it(converted, prepared_data, tmp_path):
    from training.evaluate import evaluate
    from training.export import export_run

    report = evaluate(str(converted / "final.keras"), prepared_data, num_clips=1, progress=False)
    config = json.loads((converted / "config.json").read_text())
    assert report["settings"]["stride"] == 1
    assert report["settings"]["mean"] == config["mean"]
    assert report["clip"]["count"] > 0
    version = export_run(converted, tmp_path / "exports", "r18", warmup=False)
    loaded = tf.saved_model.load(version)
    clips = np.random.default_rng(1).integers(0, 256, (2, *CLIPS), dtype=np.uint8)
    out = loaded.signatures["serving_default"](clips=tf.constant(clips))
    model = keras.saving.load_model(converted / "final.keras")
    normalized = (clips / 255.0 - np.array(config["mean"])) / np.array(config["std"])
    np.testing.assert_allclose(
        out["probabilities"].numpy(),
        model.predict(normalized.astype(np.float32), verbose=0),
        atol=1e-5,
    )
    names = loaded.signatures["class_names"](class_index=tf.constant([0], tf.int32))
    assert names["class_name"].numpy()[0].decode() == config["class_names"][0]


@pytest.mark.slow
def test_fine_tune_from_converted_run(converted, prepared_data, tmp_path):
    """The paper's protocol in one call: the converted backbone, a Class
    Regularization block after each stage, stages 1-3 frozen."""
    run_dir = tmp_path / "finetuned"
    config = tiny_config(
        prepared_data,
        run_dir,
        model=None,
        init_from=str(converted),
        epochs=1,
        validation=False,
        stride=1,
        freeze_until="stage4",
        learning_rate=0.05,
    )
    train(config)
    saved = json.loads((run_dir / "config.json").read_text())
    source = json.loads((converted / "config.json").read_text())
    assert saved["model"] == "resnet18_3d"
    assert saved["model_options"] == source["model_options"]
    assert (saved["mean"], saved["std"]) == (source["mean"], source["std"])
    assert saved["init_from_inherited"] == ["mean", "model", "model_options", "std"]
    report = saved["init_from_report"]
    assert sorted(report["new"]) == [f"stage{i}_classreg" for i in range(1, 5)]
    assert report["mismatched"] == [] and report["unused"] == []
    assert "classifier" in report["transferred"]  # same classes, same order
    base = keras.saving.load_model(converted / "final.keras")
    tuned = keras.saving.load_model(run_dir / "final.keras")
    assert len(keras_classreg.class_regularization_blocks(tuned)) == 4
    for name in ("stem_conv", "stem_bn", "stage1_block1_1_conv", "stage3_block2_2_bn"):
        for before, after in zip(base.get_layer(name).weights, tuned.get_layer(name).weights):
            np.testing.assert_array_equal(after.numpy(), before.numpy())
    changed = [
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(
            base.get_layer("stage4_block2_2_conv").weights,
            tuned.get_layer("stage4_block2_2_conv").weights,
        )
    ]
    assert all(changed)


@pytest.mark.slow
def test_fine_tune_with_other_classes_gets_a_new_classifier(
    checkpoint,
    prepared_data,
    tmp_path,
):
    names = tmp_path / "other.txt"
    names.write_text("\n".join(f"kinetics_{i}" for i in range(CLASSES)) + "\n")
    source = tmp_path / "source"
    assert (
        convert.main(
            [
                "--source",
                "3d-resnets",
                "--weights",
                str(checkpoint),
                "--out",
                str(source),
                "--clip-length",
                "8",
                "--crop-size",
                "32",
                "--class-names",
                str(names),
            ]
        )
        == 0
    )
    run_dir = tmp_path / "tuned"
    train(
        tiny_config(
            prepared_data,
            run_dir,
            model=None,
            init_from=str(source),
            epochs=1,
            validation=False,
            freeze_backbone=True,
            learning_rate=1e-12,
            weight_decay=0.0,
        )
    )
    report = json.loads((run_dir / "config.json").read_text())["init_from_report"]
    assert "classifier" in report["new"] and "classifier" not in report["transferred"]


@pytest.mark.slow
def test_explain_the_fine_tuned_model(converted, prepared_data, tmp_path):
    from training.data.synthetic import write_video
    from training.explain import explain_videos

    run_dir = tmp_path / "tuned"
    train(
        tiny_config(
            prepared_data,
            run_dir,
            model=None,
            init_from=str(converted),
            epochs=1,
            validation=False,
            freeze_backbone=True,
        )
    )
    video = tmp_path / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (16, 40, 48, 3), dtype=np.uint8)
    write_video(video, frames, fps=25)
    summaries = explain_videos(run_dir / "final.keras", [video], tmp_path / "explained")
    assert [block["block"] for block in summaries[0]["blocks"]] == [
        f"stage{i}_classreg" for i in range(1, 5)
    ]
    assert summaries[0]["predicted_class"] in _manifest_classes(prepared_data)


@pytest.mark.slow
def test_freeze_layers():
    model = models.resnet3d(18, num_classes=3, input_shape=CLIPS, widen_factor=0.125)
    frozen = freeze_layers(model, until="stage3")
    assert frozen[0] == "stem_conv" and frozen[-1] == "stage2_block2_2_bn"
    assert not model.get_layer("stage2_block1_1_bn").trainable
    assert model.get_layer("stage3_block1_1_conv").trainable
    assert model.get_layer("stage1_classreg").trainable  # new blocks always train
    model = models.resnet3d(18, num_classes=3, input_shape=CLIPS, widen_factor=0.125)
    frozen = freeze_layers(model, backbone=True)
    trainable = [layer.name for layer in model.layers if layer.trainable_weights]
    assert trainable == [f"stage{i}_classreg" for i in range(1, 5)] + ["classifier"]
    with pytest.raises(
        ValueError, match="Stages of this model: stem, stage1, stage2, stage3, stage4, classifier"
    ):
        freeze_layers(model, until="layer4")
    keras.backend.clear_session()
