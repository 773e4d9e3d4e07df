"""The reproduction study's harness: the plan of arms and seeds
(`study_plan`), one cached, resumable run per arm and seed (`run_arm`), the
statistics (`summarise`, `paired_differences`), the step-time overhead, and
the outputs (`results.json`, `results.md`, `curves.png`). What the study
compares and why: `benchmarks.reproduce`, its command line.
"""

import csv
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import cliutil
import keras_classreg
from benchmarks import report
from keras_classreg.classreg_model import class_regularization_blocks
from training import data as video_data
from training import train as trainer
from training.compilation import resolve_xla
from training.config import DEFAULT_MODEL, TrainConfig
from training.evaluate import evaluate
from training.optimization import make_optimizer

ARM_TEXT = {
    "base": "base model, E epochs",
    "classreg": "with Class Regularization, E epochs",
    "base+cr_ft": "paper protocol: base (E) → add ClassReg → fine-tune F",
    "base_cont": "control: base (E) continued F epochs",
}
RESULT_FILE = "harness_result.json"


# ---------------------------------------------------------------------------
# The plan: which runs, with which config
# ---------------------------------------------------------------------------
def study_plan(
    common, seeds, finetune_epochs, finetune_lr, ablation, ablation_seeds, num_blocks, out
):
    """The runs of the study, in execution order.

    Args:
        common: dict of `TrainConfig` fields shared by every arm.
        seeds: the seeds (ints).
        finetune_epochs: F (0: no paper-protocol arms).
        finetune_lr: peak learning rate of the F fine-tuning epochs.
        ablation: affection rates for the uniform-α ablation arms.
        ablation_seeds: how many of `seeds` the ablation runs on.
        num_blocks: Class Regularization blocks of the model.
        out: the study folder.

    Returns:
        list of dicts: `arm`, `seed`, `config` (TrainConfig fields), `init`
        (the untrained weights it starts from, or None), `after` (the arm
        whose run it continues, or None).
    """
    runs = []
    runs_dir = os.path.join(out, "runs")

    def run_dir(arm, seed):
        return os.path.join(runs_dir, f"{arm.replace('=', '')}_seed{seed}")

    def init_path(seed):
        return os.path.join(runs_dir, "init", f"seed{seed}.keras")

    for seed in seeds:
        for arm, class_regularization in (("base", False), ("classreg", True)):
            config = dict(
                common,
                seed=seed,
                class_regularization=class_regularization,
                run_dir=run_dir(arm, seed),
                init_from=init_path(seed),
            )
            runs.append(
                {"arm": arm, "seed": seed, "config": config, "init": init_path(seed), "after": None}
            )
        if finetune_epochs:
            base_final = os.path.join(run_dir("base", seed), "final.keras")
            for arm, class_regularization in (("base+cr_ft", True), ("base_cont", False)):
                config = dict(
                    common,
                    seed=seed,
                    class_regularization=class_regularization,
                    run_dir=run_dir(arm, seed),
                    init_from=base_final,
                    epochs=finetune_epochs,
                    learning_rate=finetune_lr,
                    warmup_epochs=0.0,
                    step_epochs=None,
                )
                runs.append(
                    {"arm": arm, "seed": seed, "config": config, "init": None, "after": "base"}
                )
    for seed in seeds[:ablation_seeds]:
        for rate in ablation:
            arm = f"alpha={rate:g}"
            config = dict(
                common,
                seed=seed,
                class_regularization=True,
                affection_rates=[float(rate)] * num_blocks,
                run_dir=run_dir(arm, seed),
                init_from=init_path(seed),
            )
            runs.append(
                {"arm": arm, "seed": seed, "config": config, "init": init_path(seed), "after": None}
            )
    return runs


# ---------------------------------------------------------------------------
# Running one arm
# ---------------------------------------------------------------------------
def _model_config(fields, **overrides):
    """A `TrainConfig` for building a model outside a run."""
    values = dict(fields, **overrides)
    values.update(
        data=values.get("data") or "-", run_dir=values.get("run_dir") or "-", init_from=None
    )
    return TrainConfig.from_dict(values)


def write_initial_weights(config, num_classes, path):
    """Saves the untrained base model of `config.seed` (the arms' start)."""
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    keras.backend.clear_session()
    keras.utils.set_random_seed(config["seed"])
    model = trainer.model_of(_model_config(config, class_regularization=False), num_classes)
    with cliutil.atomic_path(path) as partial:
        model.save(partial)
    return path


def run_arm(run, data, eval_views):
    """Trains and evaluates one run (or reads its cached result).

    Returns:
        dict: `arm`, `seed`, `run_dir`, `top1`, `top5` (video level, last
        epoch), `clip_top1`, `wall_seconds` (training), `history` (rows of
        history.csv).
    """
    config = run["config"]
    result_path = os.path.join(config["run_dir"], RESULT_FILE)
    if os.path.isfile(result_path):
        return cliutil.read_json(result_path)
    keras.backend.clear_session()
    started = time.perf_counter()
    run_dir = trainer.train(dict(config, data=data))
    process_seconds = time.perf_counter() - started
    history = _history(run_dir)
    keras.backend.clear_session()
    num_clips, num_crops = eval_views
    report = evaluate(
        os.path.join(run_dir, "final.keras"),
        data,
        subset=config.get("val_subset", "test"),
        num_clips=num_clips,
        num_crops=num_crops,
        batch_size=config["batch_size"],
        progress=False,
    )
    result = {
        "arm": run["arm"],
        "seed": run["seed"],
        "run_dir": run_dir,
        "top1": report["video"]["top1"],
        "top5": report["video"]["top5"],
        "top5_k": report["top5_k"],
        "clip_top1": report["clip"]["top1"],
        "videos": report["video"]["count"],
        # training + per-epoch validation, over every process of a resumed run
        "wall_seconds": round(sum(row.get("epoch_seconds", 0.0) for row in history), 1),
        "process_seconds": round(process_seconds, 1),
        "history": history,
    }
    cliutil.write_json(result_path, result)
    return result


def _history(run_dir):
    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


# ---------------------------------------------------------------------------
# Step-time overhead, measured directly
# ---------------------------------------------------------------------------
def step_time_overhead(common, num_classes, steps=20, warmup=3):
    """Median training-step time of base vs Class Regularization.

    Both models are built and compiled as `training.train` does and trained
    on one fixed random batch, alternating step by step so that both see the
    same machine load.
    """
    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    config = _model_config(common)
    shape = (config.batch_size, config.clip_length, config.crop_size, config.crop_size, 3)
    x = tf.constant(rng.standard_normal(shape).astype("float32"))
    y = tf.constant(
        np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, config.batch_size)]
    )
    # as training.train decides for one device
    xla = resolve_xla(
        config.xla,
        tf.distribute.get_strategy(),
        config.deterministic,
        zoo_model=(config.model or DEFAULT_MODEL) in keras_classreg.models.names(),
        mixed_precision=config.mixed_precision,
    )
    models = {}
    for name, class_regularization in (("base", False), ("classreg", True)):
        keras.utils.set_random_seed(0)
        model = trainer.model_of(
            _model_config(common, class_regularization=class_regularization), num_classes
        )
        model.compile(
            optimizer=make_optimizer(config, steps + warmup),
            loss=keras.losses.CategoricalCrossentropy(),
            jit_compile=xla.enabled,
        )
        models[name] = model
    times = {name: [] for name in models}
    for step in range(warmup + steps):
        for name, model in models.items():
            start = time.perf_counter()
            float(model.train_on_batch(x, y, return_dict=True)["loss"])
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    keras.backend.clear_session()
    return {
        "steps": steps,
        "batch_size": config.batch_size,
        "base_step_ms": round(median["base"] * 1e3, 1),
        "classreg_step_ms": round(median["classreg"] * 1e3, 1),
        "relative_overhead": round(median["classreg"] / median["base"] - 1, 4),
    }


def count_blocks(common, num_classes):
    keras.backend.clear_session()
    model = trainer.model_of(_model_config(common, class_regularization=True), num_classes)
    count = len(class_regularization_blocks(model))
    keras.backend.clear_session()
    if not count:
        raise ValueError(f"Model {common['model']!r} has no Class Regularization blocks.")
    return count


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------
def mean_std(values):
    values = [float(v) for v in values]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def summarise(results, arms):
    """Per arm: mean ± std of top-1/top-5 over seeds, per-seed values, times."""
    summary = {}
    for arm in arms:
        rows = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        if not rows:
            continue
        top1, top1_std = mean_std(r["top1"] for r in rows)
        top5, top5_std = mean_std(r["top5"] for r in rows)
        summary[arm] = {
            "runs": len(rows),
            "top1_mean": top1,
            "top1_std": top1_std,
            "top5_mean": top5,
            "top5_std": top5_std,
            "top1_per_seed": {str(r["seed"]): r["top1"] for r in rows},
            "top5_per_seed": {str(r["seed"]): r["top5"] for r in rows},
            "wall_seconds_mean": round(statistics.fmean(r["wall_seconds"] for r in rows), 1),
            "wall_seconds_total": round(sum(r["wall_seconds"] for r in rows), 1),
            "epoch_seconds_median": _median_epoch_seconds(rows),
        }
    return summary


def _median_epoch_seconds(rows):
    # epoch 1 includes tracing; it is left out when there are later epochs
    seconds = [
        h["epoch_seconds"]
        for r in rows
        for h in r["history"]
        if h["epoch"] > 1 or len(r["history"]) == 1
    ]
    return round(statistics.median(seconds), 2) if seconds else None


def paired_differences(results, arm, reference):
    """Per seed `arm − reference` top-1, with mean ± std and wins."""
    by_seed = {r["seed"]: r for r in results if r["arm"] == reference}
    diffs = {
        r["seed"]: r["top1"] - by_seed[r["seed"]]["top1"]
        for r in results
        if r["arm"] == arm and r["seed"] in by_seed
    }
    if not diffs:
        return None
    mean, std = mean_std(diffs.values())
    return {
        "arm": arm,
        "reference": reference,
        "top1_diff_mean": mean,
        "top1_diff_std": std,
        "top1_diff_per_seed": {str(k): v for k, v in sorted(diffs.items())},
        "wins": sum(d > 0 for d in diffs.values()),
        "ties": sum(d == 0 for d in diffs.values()),
        "losses": sum(d < 0 for d in diffs.values()),
    }


def _pct(value, std=None):
    if value is None:
        return "—"
    if std is None:
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} ± {100 * std:.1f}"


def _signed(value, std, runs):
    if runs < 2:
        return f"{100 * value:+.1f}"
    return f"{100 * value:+.1f} ± {100 * std:.1f}"


def markdown(study):
    """`results.md`: the tables of a study."""
    s = study["settings"]
    lines = [
        f"# Class Regularization reproduction study: {s['model']} on "
        f"`{os.path.basename(s['data'].rstrip('/'))}`",
        "",
        f"{s['num_classes']} classes, {s['train_videos']} training / "
        f"{s['test_videos']} test videos; clips {s['clip_length']}x{s['crop_size']}x"
        f"{s['crop_size']} (stride {s['stride']}), batch {s['batch_size']}, "
        f"E={s['epochs']} epochs (lr {s['learning_rate']:g}), F={s['finetune_epochs']} "
        f"fine-tuning epochs (lr {s['finetune_lr']:g}), seeds {s['seeds']}. "
        f"Video-level accuracy of the last epoch, {s['eval_clips']} clips x "
        f"{s['eval_crops']} crop(s) per test video; mean ± std over seeds "
        "(sample std). Wall times include per-epoch validation and depend on "
        "the machine's load.",
        "",
        f"| arm | what | runs | video top-1 % | video top-{study['top5_k']} % | "
        "top-1 per seed % | wall time / run (s) | median epoch (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, row in study["arms"].items():

        def spread(std, runs=row["runs"]):
            return std if runs > 1 else None  # one run: no spread to show

        text = ARM_TEXT.get(
            arm,
            f"ClassReg, α={arm.split('=')[1]} in every block, E epochs"
            if arm.startswith("alpha=")
            else arm,
        )
        per_seed = ", ".join(f"{100 * v:.1f}" for v in row["top1_per_seed"].values())
        lines.append(
            f"| {arm} | {text} | {row['runs']} | {_pct(row['top1_mean'], spread(row['top1_std']))} "
            f"| {_pct(row['top5_mean'], spread(row['top5_std']))} | {per_seed} | "
            f"{row['wall_seconds_mean']} | {row['epoch_seconds_median']} |"
        )
    if study["paired"]:
        lines += [
            "",
            "Paired differences (same seed, same data order, same initial "
            "weights), top-1 percentage points:",
            "",
            "| comparison | mean ± std | per seed | wins / ties / losses |",
            "|---|---|---|---|",
        ]
        for p in study["paired"]:
            per_seed = ", ".join(f"{100 * v:+.1f}" for v in p["top1_diff_per_seed"].values())
            diff = _signed(p["top1_diff_mean"], p["top1_diff_std"], len(p["top1_diff_per_seed"]))
            lines.append(
                f"| {p['arm']} − {p['reference']} | {diff} | "
                f"{per_seed} | {p['wins']} / {p['ties']} / {p['losses']} |"
            )
    o = study.get("overhead")
    if o:
        lines += [
            "",
            f"Training-step time (batch {o['batch_size']}, median of "
            f"{o['steps']} alternating steps): base {o['base_step_ms']} ms, "
            f"ClassReg {o['classreg_step_ms']} ms, relative overhead "
            f"{100 * o['relative_overhead']:+.1f} %.",
        ]
    lines += ["", f"Machine: {study['machine']}. Command:", "", "```", study["command"], "```", ""]
    return "\n".join(lines)


def plot_curves(study, results, path):
    """`curves.png`: validation top-1 per epoch, mean ± std band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = study["settings"]["epochs"]
    ablation = [a for a in study["arms"] if a.startswith("alpha=")]
    main = [a for a in study["arms"] if not a.startswith("alpha=")]
    panels = [("arms", main)] + ([("affection-rate ablation", ablation)] if ablation else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for axis, (title, arms) in zip(axes[0], panels):
        for arm in arms:
            curves = [
                [h.get("val_top1", math.nan) for h in r["history"]]
                for r in results
                if r["arm"] == arm and r["history"]
            ]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            values = np.array([c[:length] for c in curves])
            offset = epochs if arm in ("base+cr_ft", "base_cont") else 0
            x = np.arange(1, length + 1) + offset
            mean = values.mean(axis=0)
            (line,) = axis.plot(
                x, 100 * mean, marker="o", markersize=3, label=f"{arm} (n={len(curves)})"
            )
            if len(curves) > 1:
                std = values.std(axis=0, ddof=1)
                axis.fill_between(
                    x, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.15
                )
        if any(a in arms for a in ("base+cr_ft", "base_cont")):
            axis.axvline(epochs + 0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation top-1 % (centre clip)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    s = study["settings"]
    figure.suptitle(f"{s['model']}, {s['num_classes']} classes, seeds {s['seeds']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------
def run_study(
    data,
    out,
    common,
    seeds=(0, 1, 2),
    finetune_epochs=0,
    finetune_lr=None,
    ablation=(),
    ablation_seeds=1,
    eval_views=(4, 1),
    measure_overhead=True,
    command="",
    log=print,
):
    """Runs (or resumes) the whole study and writes results.json/md + curves.png.

    Args:
        data: prepared dataset folder (`python -m training.prepare`).
        out: the study folder.
        common: `TrainConfig` fields shared by every arm (not `data`,
            `run_dir`, `seed`, `class_regularization`, `init_from`).
        seeds: the seeds.
        finetune_epochs: F of the paper protocol (0: skip those arms).
        finetune_lr: its peak learning rate (default: a tenth of the
            learning rate).
        ablation: uniform affection rates to try (empty: no ablation).
        ablation_seeds: on how many of the seeds the ablation runs.
        eval_views: `(clips, crops)` per test video.
        measure_overhead: also time training steps of both models.
        command: the command line, recorded in the results.

    Returns:
        the study dict written to `results.json`.
    """
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    manifest = video_data.load_manifest(data)
    num_classes = len(manifest["class_names"])
    common = dict(common)
    for name in ("data", "run_dir", "seed", "class_regularization", "init_from"):
        common.pop(name, None)
    common.setdefault("deterministic", True)
    TrainConfig.from_dict(dict(common, data=data, run_dir=out))  # validate early
    finetune_lr = finetune_lr or 0.1 * common.get("learning_rate", TrainConfig.learning_rate)
    seeds = [int(s) for s in seeds]
    num_blocks = count_blocks(common, num_classes) if ablation else 0
    plan = study_plan(
        common, seeds, finetune_epochs, finetune_lr, list(ablation), ablation_seeds, num_blocks, out
    )
    results = []
    for index, run in enumerate(plan, 1):
        label = f"[{index}/{len(plan)}] {run['arm']} seed {run['seed']}"
        if run["init"]:
            write_initial_weights(run["config"], num_classes, run["init"])
        log(f"{label}: {run['config']['run_dir']}")
        result = run_arm(run, data, eval_views)
        log(f"{label}: video top-1 {100 * result['top1']:.1f} %, {result['wall_seconds']:.0f} s")
        results.append(result)
        study = _assemble(
            results,
            plan,
            data,
            manifest,
            common,
            seeds,
            finetune_epochs,
            finetune_lr,
            eval_views,
            command,
            None,
        )
        write_outputs(study, results, out)
    overhead = step_time_overhead(common, num_classes) if measure_overhead else None
    study = _assemble(
        results,
        plan,
        data,
        manifest,
        common,
        seeds,
        finetune_epochs,
        finetune_lr,
        eval_views,
        command,
        overhead,
    )
    write_outputs(study, results, out)
    return study


def _assemble(
    results,
    plan,
    data,
    manifest,
    common,
    seeds,
    finetune_epochs,
    finetune_lr,
    eval_views,
    command,
    overhead,
):
    arms = list(dict.fromkeys(run["arm"] for run in plan))
    config = TrainConfig.from_dict(dict(common, data=data, run_dir="-"))
    paired = [
        p
        for p in (
            paired_differences(results, "classreg", "base"),
            paired_differences(results, "base+cr_ft", "base_cont"),
        )
        if p
    ]
    paired += [
        p
        for a in arms
        if a.startswith("alpha=")
        for p in [paired_differences(results, a, "base")]
        if p
    ]
    subsets = manifest["subsets"]
    return {
        "settings": {
            "data": os.path.abspath(data),
            "model": config.model or DEFAULT_MODEL,
            "num_classes": len(manifest["class_names"]),
            "train_videos": int(subsets.get("train", {}).get("videos", 0)),
            "test_videos": int(subsets.get(config.val_subset, {}).get("videos", 0)),
            "clip_length": config.clip_length,
            "crop_size": config.crop_size,
            "stride": config.stride,
            "batch_size": config.batch_size,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "finetune_epochs": finetune_epochs,
            "finetune_lr": finetune_lr,
            "seeds": seeds,
            "eval_clips": eval_views[0],
            "eval_crops": eval_views[1],
            "common_config": common,
        },
        "planned_runs": len(plan),
        "finished_runs": len(results),
        "top5_k": min(5, len(manifest["class_names"])),
        "arms": summarise(results, arms),
        "paired": paired,
        "overhead": overhead,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
        "machine": report.machine(),
        "command": command,
    }


def write_outputs(study, results, out):
    cliutil.write_json(os.path.join(out, "results.json"), study)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as file:
        file.write(markdown(study))
    plot_curves(study, results, os.path.join(out, "curves.png"))
