"""The reproduction study (does Class Regularization help, everything else
equal?): `python -m benchmarks.reproduce --help`. The harness itself is
`training.reproduction`; this command line adds `--docs DIR`, which copies
the study's results into the docs with the command, the date and the machine:

    DIR/reproduction.md               results.md under a generated-file header
    DIR/reproduction_results.json     results.json
    DIR/reproduction_curves.png       curves.png

    python -m benchmarks.reproduce --data prepared --out study \\
        --docs docs/benchmarks ...
"""

import pathlib
import shutil
import sys

from benchmarks import report
from training import reproduction

DOCS_FILES = {"results.json": "reproduction_results.json", "curves.png": "reproduction_curves.png"}


def build_parser():
    parser = reproduction.build_parser()
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="When the study has finished, also write DIR/reproduction.md (its "
        "tables under the command, date and machine), "
        "DIR/reproduction_results.json and DIR/reproduction_curves.png "
        "(e.g. docs/benchmarks).",
    )
    return parser


def _without_docs(argv):
    """`argv` without `--docs DIR` / `--docs=DIR` (the harness does not know it)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--docs":
            skip = True
        elif not arg.startswith("--docs="):
            rest.append(arg)
    return rest


def write_docs(out, docs_dir, command_line):
    """Copies a finished study in `out` into `docs_dir` (see the module
    docstring); returns the page's path."""
    out, docs_dir = pathlib.Path(out), pathlib.Path(docs_dir)
    missing = [name for name in ("results.md", *DOCS_FILES) if not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out}: the study has not written {', '.join(missing)}; run it to the "
            "end first (re-running the same command resumes it)."
        )
    body = (out / "results.md").read_text(encoding="utf-8")
    title, _, body = body.partition("\n")
    title = title.lstrip("# ").strip() or "Class Regularization reproduction study"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for source, target in DOCS_FILES.items():
        shutil.copyfile(out / source, docs_dir / target)
    return report.write_page(
        docs_dir / "reproduction.md",
        title,
        command_line,
        [
            body.strip(),
            f"![validation top-1 per epoch]({DOCS_FILES['curves.png']})",
            f"Every figure: [`{DOCS_FILES['results.json']}`]({DOCS_FILES['results.json']}).",
        ],
    )


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)  # --help and argument errors
    code = reproduction.main(_without_docs(argv))
    if code == 0 and args.docs:
        try:
            page = write_docs(args.out, args.docs, report.command("benchmarks.reproduce", argv))
        except OSError as error:
            print(f"error: --docs: {error}", file=sys.stderr)
            return 2
        print(f"docs: {page}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
