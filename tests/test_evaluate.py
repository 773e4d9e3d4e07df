"""`training.evaluate`: the report's fields and numbers against an independent
computation, the confusion-matrix PNG, the CLI and its errors."""

import json

import keras
import numpy as np
import pytest
from PIL import Image
from test_train_support import tiny_c3d

from clipspec.format import ClipFormat
from training.data import clip_dataset, load_manifest, video_level_scores
from training.evaluate import evaluate, main

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, prepared_data):
    """An untrained tiny model in a run directory with its config.json."""
    run_dir = tmp_path_factory.mktemp("eval_run")
    keras.utils.set_random_seed(7)
    model = tiny_c3d(4, input_shape=(6, 24, 24, 3))
    path = run_dir / "best.keras"
    model.save(path)
    names = load_manifest(prepared_data)["class_names"]
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "model": "tiny_c3d",
                "input_shape": [6, 24, 24, 3],
                "clip_length": 6,
                "stride": 2,
                "crop_size": 24,
                "mean": MEAN,
                "std": STD,
                "class_names": names,
            }
        )
    )
    return str(path), model


@pytest.mark.slow
def test_report_matches_an_independent_computation(saved_model, prepared_data):
    path, model = saved_model
    report = evaluate(path, prepared_data, num_clips=2, num_crops=3, batch_size=5, progress=False)
    # settings come from the run's config.json
    settings = report["settings"]
    assert (settings["clip_length"], settings["stride"], settings["crop_size"]) == (6, 2, 24)
    assert settings["mean"] == MEAN and settings["std"] == STD
    assert settings["num_clips"] == 2 and settings["num_crops"] == 3
    # independently: the same views, the model, the data package's averaging
    views = clip_dataset(
        prepared_data,
        "test",
        mode="test",
        clip_length=6,
        stride=2,
        crop_size=24,
        batch_size=16,
        num_clips=2,
        num_crops=3,
        mean=MEAN,
        std=STD,
    )
    scores, labels, ids = [], [], []
    for clips, label, video in views:
        scores.append(model(clips, training=False).numpy())
        labels.append(label.numpy())
        ids.append(video.numpy())
    scores, labels, ids = map(np.concatenate, (scores, labels, ids))
    video_ids, video_scores = video_level_scores(scores, ids)
    video_labels = np.array([labels[ids == v][0] for v in video_ids])

    assert report["clip"]["count"] == len(scores) == 32 * 6
    assert report["clip"]["top1"] == pytest.approx(np.mean(scores.argmax(1) == labels))
    top5_k = min(5, scores.shape[1])
    assert report["top5_k"] == top5_k == 4 and report["clip"]["top5"] == 1.0
    assert report["video"]["count"] == len(video_ids) == 32
    predicted = video_scores.argmax(1)
    assert report["video"]["top1"] == pytest.approx(np.mean(predicted == video_labels))
    by_video = {v["video"]: v for v in report["videos"]}
    for vid, pred, score in zip(video_ids, predicted, video_scores.max(1)):
        assert by_video[vid]["predicted"] == pred
        assert by_video[vid]["score"] == pytest.approx(score, rel=1e-5)
        assert by_video[vid]["views"] == 6
    confusion = np.zeros((4, 4), int)
    np.add.at(confusion, (video_labels, predicted), 1)
    assert report["confusion_matrix"] == confusion.tolist()
    per_class = [c["top1"] for c in report["per_class"]]
    assert per_class == pytest.approx((np.diag(confusion) / confusion.sum(1)).tolist())
    assert [c["videos"] for c in report["per_class"]] == [8, 8, 8, 8]
    assert report["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
    assert report["chance_top1"] == 0.25


@pytest.mark.slow
def test_cli_writes_json_and_png(saved_model, prepared_data, tmp_path, capsys):
    path, _ = saved_model
    out = tmp_path / "eval"
    assert (
        main(["--model", path, "--data", prepared_data, "--num-clips", "1", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "video-level top-1" in printed and str(out / "report.json") in printed
    report = json.load(open(out / "report.json"))
    for key in (
        "clip",
        "video",
        "per_class",
        "mean_class_accuracy",
        "confusion_matrix",
        "class_names",
        "settings",
        "videos",
        "confusion_matrix_png",
    ):
        assert key in report
    assert report["class_names"] == ["down", "left", "right", "up"]
    with Image.open(out / "confusion_matrix.png") as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_errors_name_the_problem(saved_model, prepared_data, tmp_path):
    path, _ = saved_model

    def fmt(names):
        return ClipFormat(clip_length=6, crop_size=24, class_names=names)

    with pytest.raises(ValueError, match=r"predicts 4 classes but its clip format names 3"):
        evaluate(path, prepared_data, clip_format=fmt(["a", "b", "c"]), progress=False)
    with pytest.raises(
        ValueError,
        match=r"classes of .* are not the model's .*"
        r"only the model has a, b, c, d",
    ):
        evaluate(path, prepared_data, clip_format=fmt(["a", "b", "c", "d"]), progress=False)
    with pytest.raises(ValueError, match="no such model file"):
        evaluate(str(tmp_path / "missing.keras"), prepared_data)
    with pytest.raises(ValueError, match=r"Subset 'val' is not in .* \(its subsets: train, test\)"):
        evaluate(path, prepared_data, subset="val", progress=False)
