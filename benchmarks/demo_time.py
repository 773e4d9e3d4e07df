"""How long `make demo` takes: the whole chain on CPU, default settings.

Runs `python -m demo --out DIR` in a fresh folder (nothing reused) as a
user would, then reads the demo's own `DIR/artefacts.json`: seconds per
demo step (synthesize, prepare, train, evaluate, export, serve, explain),
the total, and the training's seconds per step with whether the steps were
XLA-compiled (the default configuration). Target: the whole demo within
10 minutes on a 2-core machine.

    python -m benchmarks.demo_time --docs docs/benchmarks/demo.md

`--keep DIR` runs in DIR (must not exist) and keeps it; any other option
after `--` goes to the demo (e.g. `-- --epochs 4`).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import report

TARGET_SECONDS = 600


def run_demo(out, demo_args=()):
    """Runs the demo into `out` (a new folder); returns its artefacts.json
    with `wall_seconds` (the whole process) added."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "demo", "--out", str(out), *demo_args], env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: python -m demo exited with status {done.returncode}")
    facts = json.loads((pathlib.Path(out) / "artefacts.json").read_text())
    facts["wall_seconds"] = round(wall, 1)
    return facts


def write_docs(facts, path, command):
    """The timings as a Markdown page (`benchmarks.report`)."""
    rows = [[name.removeprefix("step_"), seconds] for name, seconds in facts["seconds"].items()]
    rows.append(["**total** (the demo's own clock)", facts["total_seconds"]])
    rows.append(["the whole process (start-up included)", facts["wall_seconds"]])
    verdict = "met" if facts["wall_seconds"] <= TARGET_SECONDS else "NOT met"
    compiled = facts.get("xla_compiled")
    text = (
        f"Target: the whole demo within {TARGET_SECONDS // 60} minutes on a 2-core "
        f"machine: **{verdict}** ({facts['wall_seconds']:.0f} s). Training: "
        f"{facts.get('train_seconds_per_step', '?')} s per training step "
        "(validation and checkpoints included), steps "
        f"{'compiled with XLA (the default)' if compiled else 'not compiled with XLA'}."
    )
    if "top1" in facts:
        text += (
            f" Held-out video top-1 {facts['top1']:.3f} (chance "
            f"{facts['chance_top1']:.3f}; the demo fails below twice chance)."
        )
    settings = facts.get("settings")
    if settings:
        text += (
            " Settings (`python -m demo` defaults): "
            + ", ".join(f"{name} {value}" for name, value in settings.items())
            + "."
        )
    return report.write_page(
        path,
        "`make demo`: time per demo step",
        command,
        [text, report.markdown_table(["demo step", "seconds"], rows)],
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    demo_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.demo_time", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--keep", metavar="DIR", help="Run the demo in DIR (new) and keep it.")
    parser.add_argument(
        "--docs", metavar="FILE", help="Write the timings, command, date and machine to FILE."
    )
    args = parser.parse_args(own)
    print(f"CPU: {report.cpu_model()} ({os.cpu_count()} logical CPUs)", flush=True)
    if args.keep:
        if os.path.exists(args.keep):
            parser.error(f"--keep {args.keep} exists; give a new folder")
        facts = run_demo(args.keep, demo_args)
    else:
        work = tempfile.mkdtemp(prefix="demo_time_")
        try:
            facts = run_demo(os.path.join(work, "demo"), demo_args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in facts.items() if k != "artefacts"}))
    if args.docs:
        write_docs(facts, args.docs, report.command("benchmarks.demo_time", argv))
        print(f"wrote {args.docs}")
    return 0 if facts["wall_seconds"] <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
