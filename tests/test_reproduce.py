"""The reproduction-study harness: its statistics and one tiny end-to-end run."""

import json
import os
import pathlib

import pytest
from test_train_support import TINY_SPEC

from benchmarks import reproduce, reproduction

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _result(arm, seed, top1, top5=1.0):
    return {
        "arm": arm,
        "seed": seed,
        "top1": top1,
        "top5": top5,
        "wall_seconds": 10.0,
        "history": [{"epoch": 1, "epoch_seconds": 4.0}, {"epoch": 2, "epoch_seconds": 3.0}],
    }


def test_summary_and_paired_differences_match_hand_computed_values():
    results = [
        _result("base", 0, 0.60),
        _result("base", 1, 0.70),
        _result("base", 2, 0.80),
        _result("classreg", 0, 0.65),
        _result("classreg", 1, 0.70),
        _result("classreg", 2, 0.74),
    ]
    summary = reproduction.summarise(results, ["base", "classreg", "absent"])
    assert set(summary) == {"base", "classreg"}
    assert summary["base"]["top1_mean"] == pytest.approx(0.70)
    assert summary["base"]["top1_std"] == pytest.approx(0.10)  # sample std
    assert summary["base"]["top1_per_seed"] == {"0": 0.60, "1": 0.70, "2": 0.80}
    assert summary["base"]["epoch_seconds_median"] == 3.0  # epoch 1 left out
    paired = reproduction.paired_differences(results, "classreg", "base")
    assert paired["top1_diff_per_seed"] == pytest.approx({"0": 0.05, "1": 0.0, "2": -0.06})
    assert paired["top1_diff_mean"] == pytest.approx(-0.01 / 3)
    assert (paired["wins"], paired["ties"], paired["losses"]) == (1, 1, 1)
    assert reproduction.paired_differences(results, "base+cr_ft", "base_cont") is None


def test_plan_shares_seed_init_and_data_between_arms(tmp_path):
    common = {"model": "resnet18_3d", "epochs": 3, "learning_rate": 0.1}
    plan = reproduction.study_plan(
        common,
        [0, 1],
        finetune_epochs=2,
        finetune_lr=0.01,
        ablation=[0.0, 0.2],
        ablation_seeds=1,
        num_blocks=4,
        out=str(tmp_path),
    )
    arms = [(r["arm"], r["seed"]) for r in plan]
    assert arms == [
        ("base", 0),
        ("classreg", 0),
        ("base+cr_ft", 0),
        ("base_cont", 0),
        ("base", 1),
        ("classreg", 1),
        ("base+cr_ft", 1),
        ("base_cont", 1),
        ("alpha=0", 0),
        ("alpha=0.2", 0),
    ]
    by = {(r["arm"], r["seed"]): r["config"] for r in plan}
    assert (
        by["base", 0]["init_from"] == by["classreg", 0]["init_from"] != by["base", 1]["init_from"]
    )
    assert by["base", 0]["class_regularization"] is False
    assert by["classreg", 0]["class_regularization"] is True
    finetune = by["base+cr_ft", 1]
    assert finetune["init_from"] == os.path.join(by["base", 1]["run_dir"], "final.keras")
    assert (finetune["epochs"], finetune["learning_rate"]) == (2, 0.01)
    assert by["base_cont", 1]["init_from"] == finetune["init_from"]
    assert by["alpha=0.2", 0]["affection_rates"] == [0.2] * 4
    assert len({c["run_dir"] for c in by.values()}) == len(plan)


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--out", "x"])  # neither --data nor --layout
    assert "either --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["--out", "x", "--layout", "ucf101", "--root", "r"])
    assert "--annotations" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["--out", "x", "--data", "d", "--ablation", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err


@pytest.mark.slow  # trains every arm of a study
def test_tiny_study_end_to_end(tmp_path):
    """2 classes, 1 seed, 1 epoch, the tests' tiny model: every output is
    written, and the α=0 arm (identity blocks, same initial weights and data
    order) matches base."""
    from training.data import prepare_dataset, write_synthetic_dataset

    dataset = write_synthetic_dataset(
        tmp_path / "videos", classes=2, per_class=6, frames=12, size=32, test_fraction=0.34
    )
    prepare_dataset(dataset, tmp_path / "prepared", short_side=24, workers=0, progress=False)
    out = tmp_path / "study"
    # one replica: faster than the 2 test CPU devices; no XLA: compiling the
    # steps of five tiny one-epoch runs costs more than it saves
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"devices": ["/cpu:0"], "xla": False}))
    args = [
        *("--data", str(tmp_path / "prepared"), "--out", str(out), "--seeds", "1"),
        *("--model", TINY_SPEC, "--epochs", "1", "--finetune-epochs", "1", "--ablation", "0"),
        *("--clip-length", "4", "--stride", "1", "--crop-size", "16", "--batch-size", "4"),
        *("--eval-clips", "2", "--no-overhead", "--config", str(config)),
    ]
    assert reproduce.main([*args, "--docs", str(tmp_path / "docs")]) == 0
    assert "| base |" in (tmp_path / "docs" / "reproduction.md").read_text()
    study = json.loads((out / "results.json").read_text())
    assert study["finished_runs"] == study["planned_runs"] == 5
    assert set(study["arms"]) == {"base", "classreg", "base+cr_ft", "base_cont", "alpha=0"}
    for row in study["arms"].values():
        assert 0.0 <= row["top1_mean"] <= 1.0 and row["runs"] == 1
    assert study["arms"]["alpha=0"]["top1_mean"] == study["arms"]["base"]["top1_mean"]
    assert (out / "curves.png").stat().st_size > 1000
    assert "| base |" in (out / "results.md").read_text()
    # a second run reads the cached results instead of training again
    runs_before = {p: p.stat().st_mtime for p in out.glob("runs/*/final.keras")}
    assert reproduce.main(args) == 0
    assert {p: p.stat().st_mtime for p in out.glob("runs/*/final.keras")} == runs_before


def _official_layouts(tmp_path):
    """The same synthetic videos arranged as UCF-101 and as HMDB-51 (official
    file names, CRLF split files, `.avi` names; PyAV reads by content)."""
    import shutil

    from training.data import write_synthetic_dataset

    videos = write_synthetic_dataset(
        tmp_path / "videos", classes=2, per_class=6, frames=12, size=32, test_fraction=0.0
    )
    by_class = {}
    for item in videos.items:
        by_class.setdefault(videos.class_names[item.label], []).append(item.path)
    ucf, ucf_notes = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    hmdb, hmdb_splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    ucf_notes.mkdir()
    hmdb_splits.mkdir()
    class_index, train, test = [], [], []
    for number, (name, paths) in enumerate(sorted(by_class.items()), start=1):
        camel = name.capitalize()
        class_index.append(f"{number} {camel}")
        split_lines = []
        for group, path in enumerate(paths, start=1):
            ucf_name = f"{camel}/v_{camel}_g{group:02d}_c01.avi"
            (ucf / ucf_name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, ucf / ucf_name)
            (train if group > 2 else test).append(f"{ucf_name} {number}" if group > 2 else ucf_name)
            hmdb_name = f"{name}_clip_{group}.avi"
            (hmdb / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, hmdb / name / hmdb_name)
            split_lines.append(f"{hmdb_name} {1 if group > 2 else 2} ")
        (hmdb_splits / f"{name}_test_split1.txt").write_text("\n".join(split_lines) + "\n")
    (ucf_notes / "classInd.txt").write_text("\r\n".join(class_index) + "\r\n")
    (ucf_notes / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (ucf_notes / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    return {"ucf101": (ucf, ucf_notes), "hmdb51": (hmdb, hmdb_splits)}


@pytest.mark.slow  # trains every arm of a study
@pytest.mark.parametrize("layout", ["ucf101", "hmdb51"])
def test_study_straight_from_an_official_layout(tmp_path, layout):
    root, annotations = _official_layouts(tmp_path)[layout]
    out, prepared = tmp_path / "study", tmp_path / "prepared"
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"devices": ["/cpu:0"], "xla": False}))
    code = reproduce.main(
        [
            "--layout",
            layout,
            "--root",
            str(root),
            "--annotations",
            str(annotations),
            "--prepared",
            str(prepared),
            "--short-side",
            "24",
            "--out",
            str(out),
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--model",
            str(ROOT / "benchmarks" / "small_resnet3d.py") + ":small_resnet3d",
            "--clip-length",
            "4",
            "--stride",
            "1",
            "--crop-size",
            "16",
            "--batch-size",
            "4",
            "--eval-clips",
            "1",
            "--no-overhead",
            "--config",
            str(config),
        ]
    )
    assert code == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["skipped"] == []
    assert {k: v["videos"] for k, v in manifest["subsets"].items()} == {"train": 8, "test": 4}
    study = json.loads((out / "results.json").read_text())
    assert set(study["arms"]) == {"base", "classreg"}
    assert all(row["runs"] == 1 for row in study["arms"].values())
