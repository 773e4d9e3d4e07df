"""What every benchmark writes beside its figures.

A figure in the docs is written by the script that measured it, never by
hand: each benchmark's `--docs FILE` option writes a Markdown page through
`write_page`, which heads it with the exact command, the date and the
machine (CPU model, logical CPUs, TensorFlow/Keras/Python versions), so a
reader knows what produced the numbers and how to produce them again.

    from benchmarks import report
    table = report.markdown_table(["model", "ms"], [["resnet18_3d", 12.5]])
    report.write_page("docs/benchmarks/x.md", "My benchmark",
                      report.command("benchmarks.x", argv), [table])

Example:

>>> print(markdown_table(["a", "b"], [[1, "x|y"]]))
| a | b |
|---|---|
| 1 | x\\|y |
"""

import datetime
import os
import pathlib
import platform
import shlex
import sys

GENERATED_NOTE = (
    "Written by the command below; do not edit by hand, run it "
    "again (on a quiet machine) to update the figures."
)


def cpu_model():
    """The CPU's model name (`/proc/cpuinfo`), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine():
    """One line naming the machine and the software versions measured."""
    parts = [f"{cpu_model()}, {os.cpu_count()} logical CPUs"]
    for module, name in (("tensorflow", "TensorFlow"), ("keras", "Keras")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            parts.append(f"{name} {loaded.__version__}")
    parts.append(f"Python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        # other work on the machine slows every figure; say how busy it was
        parts.append(
            "load average (1/5/15 min) when written: "
            + " / ".join(f"{v:.2f}" for v in os.getloadavg())
        )
    return "; ".join(parts)


def command(module, argv=None):
    """`python -m MODULE ARGS` as it can be pasted into a shell (`argv`
    defaults to this process's arguments)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", "-m", module, *(shlex.quote(str(a)) for a in argv)])


def _cell(value):
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows):
    """A Markdown table (every cell through `str`, `|` escaped)."""
    header = list(header)
    if not header:
        raise ValueError("markdown_table: expected at least one column.")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise ValueError(
                f"markdown_table: row {index} has {len(row)} cells, the header "
                f"{len(header)}. Received: {row!r}"
            )
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def page(title, command_line, sections, date=None):
    """A Markdown page: title, the generated-file note, command, date,
    machine, then `sections` (strings, separated by blank lines)."""
    date = date or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"# {title}",
        "",
        f"*{GENERATED_NOTE}*",
        "",
        "```",
        command_line,
        "```",
        "",
        f"Date: {date}  ",
        f"Machine: {machine()}",
    ]
    return "\n".join(head) + "\n\n" + "\n\n".join(s.rstrip("\n") for s in sections) + "\n"


def write_page(path, title, command_line, sections, date=None):
    """Writes `page(...)` to `path` (folders created); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, command_line, sections, date), encoding="utf-8")
    return path
