"""`python -m demo` runs the whole chain (small settings and the
tiny test model; about two minutes on 2 cores, most of it the ten epochs
it needs to beat chance reliably) and lists every artefact it made."""

import json
import os

import pytest
from PIL import Image
from test_train_support import TINY_SPEC

from demo import walkthrough as demo_module

# The whole demo chain: synthesis, training, export, a server.
pytestmark = pytest.mark.slow


def test_demo_chain_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo_out"
    code = demo_module.main(
        [
            "--out",
            str(out),
            "--classes",
            "4",
            "--per-class",
            "32",
            "--frames",
            "16",
            "--size",
            "32",
            "--model",
            TINY_SPEC,
            "--clip-length",
            "8",
            "--crop-size",
            "32",
            "--epochs",
            "10",
            "--learning-rate",
            "0.1",
            "--seed",
            "3",
            "--num-clips",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    index = json.load(open(out / "artefacts.json"))
    artefacts = index["artefacts"]
    for name in (
        "videos",
        "shards",
        "run",
        "model",
        "report",
        "confusion_matrix",
        "savedmodel",
        "grpc_prediction",
        "server_log",
        "explanation_png",
        "explanation_gif",
    ):
        assert name in artefacts, name
        path = artefacts[name]["path"]
        assert os.path.exists(path), path
        assert path in printed  # every artefact's location is printed
    assert [step for step in index["seconds"]] == [step.__name__ for step in demo_module.STEPS]

    report = json.load(open(artefacts["report"]["path"]))
    assert report["video"]["top1"] >= 2 * report["chance_top1"]
    prediction = json.load(open(artefacts["grpc_prediction"]["path"]))
    assert prediction["true_class"] in report["class_names"]
    assert [p["class"] in report["class_names"] for p in prediction["top_k"]] == [True] * 3
    assert abs(sum(p["score"] for p in prediction["top_k"])) <= 1.0 + 1e-5
    assert os.path.isfile(os.path.join(artefacts["savedmodel"]["path"], "saved_model.pb"))
    with Image.open(artefacts["explanation_png"]["path"]) as image:
        assert image.format == "PNG"
    assert "video-level top-1" in printed and "gRPC Predict" in printed
    # elapsed time per demo step and per training step
    assert printed.count(" done in ") == len(demo_module.STEPS)
    assert "s per training step" in printed
    assert index["train_seconds_per_step"] > 0
    # this process has two logical CPU devices (conftest): two replicas, whose
    # steps are not compiled; the demo on a machine's one CPU device compiles
    assert index["xla_compiled"] is False


def test_demo_trains_with_the_default_xla_path(tmp_path, monkeypatch):
    """The demo's training config leaves XLA at its default (decided per
    machine by training.compilation); its run directory's summary says
    what was chosen (checked above for the run; here: the config it
    passes)."""
    import training.train
    from training.config import TrainConfig

    seen = []

    def fake_train(config):
        seen.append(config)
        raise RuntimeError("stop after the config")

    monkeypatch.setattr(training.train, "train", fake_train)
    demo = demo_module.Demo(out=str(tmp_path))
    demo.facts["prepared"] = str(tmp_path / "prepared")
    with pytest.raises(RuntimeError, match="stop after the config"):
        demo_module.step_train(demo)
    (config,) = seen
    assert "xla" not in config and TrainConfig.from_dict(dict(config)).xla is None
