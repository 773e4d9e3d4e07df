"""Benchmarks write their figures into the docs themselves (`--docs`), under
the command, the date and the machine (`benchmarks.report`)."""

import json
import re

import pytest

from benchmarks import report


def test_markdown_table_escapes_and_checks_widths():
    table = report.markdown_table(["name", "value"], [["a|b", 1.5], ["c", "x\ny"]])
    assert table.splitlines() == ["| name | value |", "|---|---|", "| a\\|b | 1.5 |", "| c | x y |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        report.markdown_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="at least one column"):
        report.markdown_table([], [])


def test_command_is_pasteable():
    assert (
        report.command("benchmarks.x", ["--docs", "a b.md", "--runs", 3])
        == "python -m benchmarks.x --docs 'a b.md' --runs 3"
    )


def test_page_names_command_date_and_machine(tmp_path):
    path = report.write_page(
        tmp_path / "sub" / "page.md",
        "Title",
        "python -m benchmarks.x --docs page.md",
        ["First.", "| a |\n|---|\n| 1 |"],
        date="2030-01-02 03:04 UTC",
    )
    text = path.read_text()
    assert text.startswith("# Title\n")
    assert "python -m benchmarks.x --docs page.md" in text
    assert "Date: 2030-01-02 03:04 UTC" in text
    assert f"Machine: {report.cpu_model()}" in text
    assert "do not edit by hand" in text
    assert text.endswith("| 1 |\n")
    assert report.cpu_model()  # never empty


def test_reproduction_study_docs_copy_the_harness_outputs(tmp_path):
    from benchmarks import reproduce

    out = tmp_path / "study"
    out.mkdir()
    (out / "results.md").write_text("# Study title\n\n| arm | top-1 |\n|---|---|\n| base | 70 |\n")
    (out / "results.json").write_text(json.dumps({"arms": {}}))
    (out / "curves.png").write_bytes(b"\x89PNG fake")
    page = reproduce.write_docs(
        out, tmp_path / "docs", "python -m benchmarks.reproduce --out study"
    )
    text = page.read_text()
    assert text.startswith("# Study title\n")
    assert "| base | 70 |" in text and "python -m benchmarks.reproduce --out study" in text
    assert "](reproduction_curves.png)" in text
    assert (tmp_path / "docs" / "reproduction_curves.png").read_bytes() == b"\x89PNG fake"
    assert json.loads((tmp_path / "docs" / "reproduction_results.json").read_text()) == {"arms": {}}
    (out / "curves.png").unlink()
    with pytest.raises(FileNotFoundError, match="has not written curves.png"):
        reproduce.write_docs(out, tmp_path / "docs", "cmd")


def test_reproduce_cli_parses_docs_with_the_study_flags():
    from benchmarks import reproduce

    args = reproduce.build_parser().parse_args(["--data", "d", "--out", "o", "--docs", "x"])
    assert (args.data, args.out, args.docs) == ("d", "o", "x")


def test_serving_load_docs_page(tmp_path):
    from benchmarks import serving_load

    result = {
        "model": "resnet18_3d",
        "input_shape": [8, 64, 64, 3],
        "num_classes": 10,
        "max_batch_size": 16,
        "cpu": "cpu",
        "cpus": 2,
        "throughput": {
            "in_process_clips_per_s": {"1": 10.0, "2": 12.0},
            "in_process_best": {"batch": 2, "clips_per_s": 12.0},
            "served_clips_per_s": 11.0,
            "clients": 16,
            "failures": 0,
            "ratio": 0.917,
            "target": ">= 0.85",
            "num_batch_threads": 2,
            "other_num_batch_threads": {"1": {"served_clips_per_s": 11.5, "ratio": 0.958}},
        },
        "rest_vs_grpc_batch1": {"rest_p50_ms": 12.0, "grpc_p50_ms": 10.0, "ratio": 1.2},
        "load": {
            "requests": 100,
            "malformed": 5,
            "wrong_answers": 0,
            "unexpected_errors": [],
            "throughput_rps": 20.0,
            "p50_ms": 50.0,
            "p99_ms": 90.0,
        },
        "server_rss_mb": {"before": 1000.0, "after": 1001.0},
        "batch1_latency": {"served_p50_ms": 11.0, "in_process_p50_ms": 10.0, "ratio": 1.1},
        "expired_calls": {
            "calls": 20,
            "deadline_ms": 10.0,
            "codes": {"DEADLINE_EXCEEDED": 20},
            "idle_p50_ms": 40.0,
            "after_p50_ms": 42.0,
            "ratio": 1.05,
        },
    }
    path = tmp_path / "serving_load.md"
    serving_load.write_docs(result, path, "python -m benchmarks.serving_load --docs x")
    text = path.read_text()
    assert "| served / in-process best (batch 2), num_batch_threads 2 | 0.917 | >= 0.85 |" in text
    assert "| served clips/s and / in-process best, num_batch_threads 1 | 11.5, 0.958 |" in text
    assert "(10 ms deadline) / idle, p50 | 42.00 / 40.00 ms = 1.050;" in text
    assert "python -m benchmarks.serving_load --docs x" in text


@pytest.mark.slow
def test_overhead_writes_its_tables_into_the_docs(tmp_path):
    from benchmarks import overhead

    path = tmp_path / "overhead.md"
    assert (
        overhead.main(
            [
                "resnet18_3d:4x32x32",
                "--num-classes",
                "5",
                "--runs",
                "2",
                "--warmup",
                "1",
                "--docs",
                str(path),
            ]
        )
        == 0
    )
    text = path.read_text()
    assert "python -m benchmarks.overhead resnet18_3d:4x32x32" in text
    rows = [line for line in text.splitlines() if line.startswith("| resnet18_3d | 4x32x32 |")]
    assert len(rows) == 2  # the model table and the blocks-alone table
    flops_ratio = float(rows[0].split("|")[5])
    assert 1.0 < flops_ratio < 1.05
    assert re.search(r"Machine: .+ logical CPUs; TensorFlow", text)


def test_overhead_rejects_a_malformed_case(capsys):
    from benchmarks import overhead

    with pytest.raises(SystemExit):
        overhead.main(["resnet18_3d:4x32", "--no-latency"])
    assert "a case is MODEL:TxHxW" in capsys.readouterr().err


def test_train_step_and_input_pipeline_docs_pages(tmp_path):
    from benchmarks import input_pipeline, train_step

    row = {
        "model": "resnet50_3d",
        "clip": "8x112x112",
        "default_ms": 2550.0,
        "best_ms": 2500.0,
        "best_config": "XLA off, oneDNN on, 2 threads",
        "default_over_best": 1.02,
        "forward_ms": 1100.0,
        "forward_no_xla_ms": 740.0,
        "step_over_forward": 2.3,
        "base_ms": 2450.0,
        "classreg_over_base": 1.04,
        "all": [
            [2550.0, "XLA on, oneDNN on, 2 threads"],
            [2500.0, "XLA off, oneDNN on, 2 threads"],
        ],
        "failures": {},
    }
    meta = {
        "command": "python -m benchmarks.train_step --docs x",
        "batch_size": 2,
        "num_classes": 400,
        "mixed_precision": False,
        "steps": 5,
        "warmup": 1,
        "physical_cores": 1,
        "seconds": 120.0,
        "default_env": "default: TF_ENABLE_ONEDNN_OPTS=1, threads default",
        "default_xla_reason": "XLA off: a zoo model on a CPU with oneDNN on",
    }
    train_step.write_docs([row], meta, tmp_path / "train_step.md")
    text = (tmp_path / "train_step.md").read_text()
    assert (
        "| resnet50_3d | 8x112x112 | 2.55 s | 2.50 s (XLA off, oneDNN on, 2 threads) | 1.02 |"
        in text
    )
    assert "Default here: default: TF_ENABLE_ONEDNN_OPTS=1, threads default; XLA off" in text
    row.update(default_over_best=1.3)
    train_step.write_docs([row], meta, tmp_path / "slow_default.md")
    assert "| 1.3 (over target) |" in (tmp_path / "slow_default.md").read_text()
    assert "| 1.04 |" in text and "python -m benchmarks.train_step --docs x" in text
    input_pipeline.write_docs(
        {
            "clip": [16, 112, 112, 3],
            "stride": 2,
            "batch_size": 8,
            "videos": 48,
            "frames": 3072,
            "augmentation": "scale_jitter",
            "frame_size": [128, 170],
            "rounds": 3,
            "clips_per_round": 240,
            "load_average": [1.0, 1.0, 1.0],
            "pyav_decode_fps_per_process": 600.0,
            "prepare_workers": 2,
            "prepare_videos_per_second": 3.4,
            "raw_decode_clips_per_second": 500.0,
            "raw_decode_clips_per_cpu_second": 260.0,
            "device_pipeline_clips_per_second": 450.0,
            "device_pipeline_clips_per_cpu_second": 240.0,
            "device_ratio": 0.9,
            "host_pipeline_clips_per_second": 350.0,
            "host_pipeline_clips_per_cpu_second": 180.0,
            "host_ratio": 0.7,
            "test_views_per_second": 90.0,
            "test_views_per_cpu_second": 50.0,
            "cpu_ms_per_clip_by_stage": {"read": 0.5, "+ decode_jpeg": 3.5},
            "raw_decode_cpu_ms_per_clip": 3.6,
            "clip_augmentation_layer_cpu_ms_per_clip": 17.0,
        },
        tmp_path / "input_pipeline.md",
        "python -m benchmarks.input_pipeline --docs x",
    )
    text = (tmp_path / "input_pipeline.md").read_text()
    assert text.startswith("# Input-pipeline benchmark") and "python -m benchmarks." in text
    assert '| train, `augment_on="device"` (uint8 frames) | 450.0 | 240.0 | 0.9 |' in text
    assert "| + decode_jpeg | 3.5 |" in text


def test_demo_time_page(tmp_path):
    from benchmarks import demo_time

    facts = {
        "seconds": {"step_synthesize": 20.0, "step_train": 400.5},
        "total_seconds": 420.5,
        "wall_seconds": 431.0,
        "train_seconds_per_step": 1.1,
        "xla_compiled": True,
    }
    demo_time.write_docs(facts, tmp_path / "demo.md", "python -m benchmarks.demo_time --docs x")
    text = (tmp_path / "demo.md").read_text()
    assert "| train | 400.5 |" in text and "**met** (431 s)" in text
    assert "compiled with XLA (the default)" in text
    facts["wall_seconds"] = 700.0
    demo_time.write_docs(facts, tmp_path / "slow.md", "python -m benchmarks.demo_time")
    assert "**NOT met** (700 s)" in (tmp_path / "slow.md").read_text()


def test_serving_load_and_timeline_refuse_bad_settings_before_any_work(capsys):
    from benchmarks import serving_load, timeline

    for main, argv, words in (
        (serving_load.main, ["--num-batch-threads", "2", "0"], "--num-batch-threads"),
        (timeline.main, ["--hour-hop", "0"], "--hour-hop must be > 0"),
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert words in capsys.readouterr().err
