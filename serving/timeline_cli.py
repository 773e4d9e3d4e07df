"""`python -m serving.client --timeline` and `--live`: the command line of
`serving.timeline` (files) and `serving.live` (streams).

`serving.client` adds these options to its parser (`add_arguments`) and
hands the run over (`run`) when `--timeline` or `--live` is given. Output,
as answers come:

- text: one line per window (times, top classes; live: latency) and one
  per segment;
- `--json`: JSON Lines, a `"kind": "window"` record per window and a
  `"kind": "segment"` record per segment (`serving.timeline`), flushed;
  an input that fails gives `{"source": ..., "error": ...}`;
- `--vtt PATH`: WebVTT subtitles, one cue per segment (`serving.webvtt`);
- `--plot PATH`: a PNG of the probabilities over time
  (`serving.timeline_plot`);
- `--explain DIR`: per-window class-evidence maps and an overlay video
  (`serving.timeline_explain`).

Exit status: 0 when every input was labelled to its end, 1 when one failed
(unreadable, the server failed, a live stream lost for good after its
retries), 2 for a usage error, 130 on Ctrl-C (a live run prints its
summary first).
"""

import contextlib
import os
import sys

import cliutil
from clipspec.stream import DEFAULT_TIMEOUT, is_live
from serving.timeline import (
    DEFAULT_IN_FLIGHT,
    FileTimeline,
    Segmenter,
    segment_record,
    window_record,
)

DEFAULT_RECONNECTS = 5


def add_arguments(parser):
    """The timeline options of `python -m serving.client`."""
    group = parser.add_argument_group(
        "timeline of long videos and live streams (--timeline, --live; see docs/timeline.md)"
    )
    group.add_argument(
        "--timeline",
        action="store_true",
        help="Label each input over time: one answer per window of the model's clip "
        "every --hop seconds, merged into segments, instead of one label per video.",
    )
    group.add_argument(
        "--live",
        action="store_true",
        help="Treat the inputs as live streams (implies --timeline; implied for "
        "anything that is not a regular file: rtsp://, http://, udp://, /dev/video0, "
        "- for stdin): the newest window every hop, older ones dropped when the "
        "server is slower, reconnects on a lost stream.",
    )
    group.add_argument(
        "--hop",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Seconds between window starts. Default: half a window.",
    )
    group.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="Average each window's probabilities with the N-1 before it. Default: 1 (none).",
    )
    group.add_argument(
        "--in-flight",
        type=int,
        default=None,
        metavar="N",
        help=f"Windows waiting for the server at once. Default: {DEFAULT_IN_FLIGHT} (live: 2).",
    )
    group.add_argument("--vtt", metavar="PATH", default=None, help="Write WebVTT subtitles.")
    group.add_argument("--plot", metavar="PATH", default=None, help="Write a PNG of the timeline.")
    group.add_argument(
        "--explain-every",
        type=int,
        default=1,
        metavar="N",
        help="With --explain: explain every Nth window. Default: 1.",
    )
    group.add_argument(
        "--stream-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"Seconds to wait for a stream to open or send data. Default: {DEFAULT_TIMEOUT:g}.",
    )
    group.add_argument(
        "--reconnects",
        type=int,
        default=DEFAULT_RECONNECTS,
        metavar="N",
        help="Live: times a lost stream is opened again (backoff 0.5 s doubling, "
        f"at most 8 s) before giving up. Default: {DEFAULT_RECONNECTS}.",
    )


def wanted(args):
    """Whether the arguments ask for a timeline."""
    return bool(args.timeline or args.live)


def _check(args):
    if args.hop is not None and not args.hop > 0:
        raise ValueError(f"--hop must be a positive number of seconds, not {args.hop:g}")
    for flag, value in (
        ("--smooth", args.smooth),
        ("--explain-every", args.explain_every),
        ("--in-flight", args.in_flight),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive int, not {value}")
    if args.reconnects < 0:
        raise ValueError(f"--reconnects must be 0 or more, not {args.reconnects}")
    if not args.stream_timeout > 0:
        raise ValueError(f"--stream-timeout must be positive, not {args.stream_timeout:g}")
    if args.num_clips is not None or args.num_crops is not None:
        raise ValueError(
            "--num-clips and --num-crops do not apply to a timeline (one clip per window)"
        )
    if (args.vtt or args.plot) and len(args.videos) != 1:
        raise ValueError("--vtt and --plot take one input (the timeline of one video)")
    for flag, path in (("--vtt", args.vtt), ("--plot", args.plot)):
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):
            raise ValueError(f"{flag} {path}: the folder {folder} does not exist")


class Outputs:
    """Where one input's windows and segments go (text or JSON Lines, and
    the optional WebVTT, PNG and explanations)."""

    def __init__(self, args, source, class_names, explainer=None, live=False):
        self.args, self.source, self.explainer = args, source, explainer
        self.class_names, self.live = class_names, live
        self._stack = contextlib.ExitStack()
        self.vtt = self.plot = None
        if args.vtt:
            from serving.webvtt import WebVTTWriter

            handle = self._stack.enter_context(open(args.vtt, "w", encoding="utf-8"))
            self.vtt = WebVTTWriter(handle)
        if args.plot:
            from serving.timeline_plot import TimelinePlot

            self.plot = TimelinePlot(class_names)

    def window(self, result, clip=None):
        if self.plot is not None:
            self.plot.add(result)
        if self.explainer is not None and clip is not None:
            self.explainer.add(result, clip)
        if self.args.json:
            _print_json(window_record(self.source, result, self.live))
            return
        window = result.window
        top = " | ".join(f"{name} {p:.2f}" for name, p in result.top_k[: self.args.top_k])
        latency = f"  latency {result.latency * 1000:.0f} ms" if self.live else ""
        print(f"{window.start:9.2f} - {window.end:9.2f} s  {top}{latency}", flush=True)

    def segment(self, segment):
        if segment is None:
            return
        if self.vtt is not None:
            self.vtt.segment(segment)
        if self.plot is not None:
            self.plot.add_segment(segment)
        if self.args.json:
            _print_json(segment_record(self.source, segment))
        else:
            print(
                f"segment {segment.start:9.2f} - {segment.end:9.2f} s  {segment.label} "
                f"({segment.probability:.2f}, {segment.windows} windows)",
                flush=True,
            )

    def close(self):
        self._stack.close()
        if self.explainer is not None:
            self.explainer.close()
            files = [str(path) for path in self.explainer.files]
            if self.args.json:
                _print_json({"source": self.source, "kind": "explanation", "files": files})
            else:
                print("explanations: " + ", ".join(map(cliutil.printable, files)), flush=True)
        if self.plot is not None and self.plot.rows:
            self.plot.save(self.args.plot, title=cliutil.printable(self.source))


def _print_json(record):
    print(cliutil.dumps_json(record, indent=None), flush=True)


def _failure_line(source, message, as_json):
    if as_json:
        _print_json({"source": source, "error": message})
    else:
        print(
            f"{cliutil.printable(source)}: error: {cliutil.printable(message)}",
            file=sys.stderr,
            flush=True,
        )


def _overrides(args):
    return dict(clip_length=args.clip_length, stride=args.stride, short_side=args.short_side)


def _explainer(args, predictor, source, stem, version):
    if args.explain is None:
        return None
    from serving.timeline_explain import TimelineExplainer

    return TimelineExplainer(
        predictor, args.model, args.explain, stem, every=args.explain_every, version=version
    )


def file_timeline(args, predictor, source, stem):
    """Labels one finite source; raises on failure."""
    timeline = FileTimeline(
        predictor,
        args.model,
        source,
        version=args.version,
        hop=args.hop,
        top_k=max(args.top_k, 1),
        smooth=args.smooth,
        in_flight=args.in_flight or DEFAULT_IN_FLIGHT,
        timeout=args.stream_timeout,
        **_overrides(args),
    )
    segments = Segmenter()
    outputs = None
    try:
        for result in timeline:
            if outputs is None:
                class_names = timeline.labeller.names(
                    len(result.probabilities), result.model_version
                )
                explainer = _explainer(args, predictor, source, stem, result.model_version)
                outputs = Outputs(args, source, class_names, explainer)
            outputs.window(result, result.window.clip)
            result.window.clip = None
            outputs.segment(segments.add(result))
        if outputs is not None:
            outputs.segment(segments.finish())
    finally:
        if outputs is not None:
            outputs.close()
    stream = timeline.stream
    if stream is not None and stream.errors:  # damaged: the rest was labelled
        print(
            f"{cliutil.printable(source)}: warning: {stream.errors} undecodable packet(s) "
            f"skipped, the first {stream.first_error}",
            file=sys.stderr,
            flush=True,
        )


def live_timeline(args, predictor, source, stem):
    """The `--live` command line for one source: prints answers, segments
    and the summary; returns 0 (the stream ended), 1 (lost) or 130
    (Ctrl-C)."""
    from serving.live import DEFAULT_LIVE_IN_FLIGHT, LiveTimeline, StreamLost

    printable = cliutil.printable(source)

    def warn(message):
        print(f"{printable}: warning: {cliutil.printable(message)}", file=sys.stderr, flush=True)

    timeline = LiveTimeline(
        predictor,
        args.model,
        source,
        version=args.version,
        hop=args.hop,
        top_k=max(args.top_k, 1),
        smooth=args.smooth,
        in_flight=args.in_flight or DEFAULT_LIVE_IN_FLIGHT,
        timeout=args.stream_timeout,
        reconnects=args.reconnects,
        on_warning=warn,
        **_overrides(args),
    )
    segments = Segmenter()
    state = {"outputs": None}

    def on_result(result):
        if state["outputs"] is None:
            names = timeline.labeller.names(len(result.probabilities), result.model_version)
            explainer = _explainer(args, predictor, source, stem, result.model_version)
            state["outputs"] = Outputs(args, source, names, explainer, live=True)
        state["outputs"].window(result, result.window.clip)
        result.window.clip = None
        state["outputs"].segment(segments.add(result))

    status = 0
    try:
        timeline.run(on_result)
    except StreamLost as error:
        _failure_line(source, str(error), args.json)
        status = 1
    except KeyboardInterrupt:
        status = cliutil.INTERRUPTED
    finally:
        if state["outputs"] is not None:
            state["outputs"].segment(segments.finish())
            state["outputs"].close()
        summary = timeline.summary()
        if summary.frames or status == cliutil.INTERRUPTED:  # nothing to sum up otherwise
            print(f"{printable}: {summary.text()}", file=sys.stderr, flush=True)
            if args.json:
                _print_json({"source": source, "kind": "summary", **summary.record()})
    return status


def run(args):
    """Runs the timeline command line; returns the exit status."""
    from clipspec.explanation_files import output_names
    from serving.client_base import failure_reason
    from serving.predictor import make_predictor

    try:
        _check(args)
        predictor = make_predictor(
            args.server,
            rest=args.rest,
            timeout=args.timeout,
            retries=args.retries,
            ssl=args.ssl,
            ssl_ca=args.ssl_ca,
            ssl_cert=args.ssl_cert,
            ssl_key=args.ssl_key,
            ssl_target_name=args.ssl_server_name,
        )
    except ValueError as error:
        return cliutil.fail(error)
    stems = output_names(args.videos)
    failures = 0
    with predictor:
        for source in args.videos:
            live = args.live or is_live(source)
            try:
                if live:
                    status = live_timeline(args, predictor, source, stems[source])
                    if status == cliutil.INTERRUPTED:
                        return status
                    failures += status != 0
                else:
                    file_timeline(args, predictor, source, stems[source])
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 — reported for this input
                failures += 1
                _failure_line(source, failure_reason(error), args.json)
    if failures and not args.json:
        print(f"{failures} of {len(args.videos)} input(s) failed.", file=sys.stderr)
    return 1 if failures else 0


__all__ = ["add_arguments", "run", "wanted"]
