"""`python -m serving.client`: classify video files with a model served
over TF Serving's gRPC API (or its REST API with `--rest`), by
`python -m serving.server` or the official `tensorflow/serving` container.

    python -m serving.client --server 127.0.0.1:8500 --model classreg a.mp4 b.avi
    python -m serving.client --model classreg --json a.mp4
    python -m serving.client --model classreg --explain explain_out a.mp4

Each video is decoded and cut into the model's test-time views as its
`ClipFormat` says (`serving.video_pipeline`), sent through the gRPC client
(`serving.grpc_client.ServingClient`) or the REST one
(`serving.rest_client.RestClient`), and the view probabilities averaged;
`--timeline` classifies windows of long videos and streams instead
(`serving.timeline_cli`).

Every input is answered on its own: a file that cannot be read or
classified (empty, not a video, an image renamed .avi, audio only, a
broken link, a server error for that request) is reported with the reason
— on stderr as `PATH: error: REASON`, or with `--json` as that input's
record `{"path": ..., "error": ...}` — and the next file is classified.
Answers are printed as soon as they are known (`--json`: JSON Lines, one
object per input, in input order, flushed), so an interruption or a crash
never loses the answers already computed. Exit status: 0 when every input
was classified, 1 when any failed, 2 for a usage error, 130 on Ctrl-C.

The library's names are importable from here too (`ServingClient`,
`classify_video`, ...):

>>> client = ServingClient("127.0.0.1:8500", timeout=10)      # doctest: +SKIP
>>> result = classify_video(client, "classreg", "a.mp4")       # doctest: +SKIP
"""

import sys

import cliutil
from serving import timeline_cli
from serving.client_base import failure_reason
from serving.defaults import DEFAULT_MAX_MESSAGE_BYTES
from serving.grpc_client import (
    CHANNEL_OPTIONS,
    DEFAULT_SERVER,
    MAX_RETRIES,
    RETRY_CODES,
    ServingClient,
    channel_credentials,
    retry_service_config,
)
from serving.video_pipeline import (
    DEFAULT_VIEWS_PER_REQUEST,
    VideoPrediction,
    classify_video,
    model_clip_format,
    request_explanation,
    video_views,
)


def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m serving.client",
        description=(
            "Classify video files with a model served over TF Serving's "
            "gRPC API (python -m serving.server or the tensorflow/serving "
            "container). Each video is decoded, sampled into test-time "
            "views (uniform clips x crops), sent in one Predict request, and "
            "the view probabilities are averaged."
        ),
        epilog="Example: python -m serving.client --server 127.0.0.1:8500 "
        "--model classreg video1.mp4 video2.avi --json",
    )
    parser.add_argument(
        "videos", nargs="+", help="Video files (anything FFmpeg decodes: mp4, avi, mkv, webm, ...)."
    )
    parser.add_argument(
        "--server",
        default=None,
        help=f"host:port of the gRPC server (with --rest: of "
        f"the REST API). Default: {DEFAULT_SERVER} (with "
        "--rest: 127.0.0.1:8501).",
    )
    parser.add_argument(
        "--rest",
        action="store_true",
        help="Talk to TF Serving's REST API instead of gRPC (serving.rest_client).",
    )
    parser.add_argument("--model", required=True, help="Model name on the server (MODEL_NAME).")
    parser.add_argument(
        "--version", type=int, default=None, help="Model version (default: the latest served)."
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="Classes to print per video. Default: 5."
    )
    fmt = parser.add_argument_group(
        "clip format (default: the model's own, read from its clip_format "
        "signature; these override it)"
    )
    fmt.add_argument("--clip-length", type=int, default=None, help="Frames per clip.")
    fmt.add_argument("--crop-size", type=int, default=None, help="Crop size in pixels.")
    fmt.add_argument(
        "--stride", type=int, default=None, help="Temporal stride between sampled frames."
    )
    fmt.add_argument(
        "--num-clips", type=int, default=None, help="Uniformly spaced clips per video."
    )
    fmt.add_argument(
        "--num-crops",
        type=int,
        default=None,
        choices=(1, 3),
        help="Spatial crops per clip (1: centre; 3: along the long side).",
    )
    fmt.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="Decode frames at this short side before cropping.",
    )
    parser.add_argument(
        "--views-per-request",
        type=int,
        default=DEFAULT_VIEWS_PER_REQUEST,
        help="Clips per Predict request (keeps requests "
        "under the message size limit). Default: "
        f"{DEFAULT_VIEWS_PER_REQUEST}.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="Seconds per request, retries included. Default: 30.",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        choices=range(MAX_RETRIES + 1),
        metavar="0-4",
        help="Retries on UNAVAILABLE, with exponential backoff (gRPC's retry policy). Default: 3.",
    )
    tls = parser.add_argument_group("TLS (a server started with --ssl_config_file; gRPC only)")
    tls.add_argument(
        "--ssl",
        action="store_true",
        help="Use TLS, trusting the system's CAs (implied by --ssl-ca, --ssl-cert, --ssl-key).",
    )
    tls.add_argument(
        "--ssl-ca",
        metavar="PEM",
        default=None,
        help="CA certificate that signed the server's certificate (its custom CA).",
    )
    tls.add_argument(
        "--ssl-cert",
        metavar="PEM",
        default=None,
        help="Client certificate (mutual TLS: the server's client_verify).",
    )
    tls.add_argument(
        "--ssl-key", metavar="PEM", default=None, help="Client private key (with --ssl-cert)."
    )
    tls.add_argument(
        "--ssl-server-name",
        metavar="NAME",
        default=None,
        help="Check the server's certificate against this name instead of the host of --server.",
    )
    parser.add_argument(
        "--explain",
        metavar="DIR",
        default=None,
        help="Also request the 'explain' signature for each "
        "video's centre clip and save its per-block class-"
        "evidence pictures (PNG grid, GIF, JSON) in DIR (with "
        "--timeline: per window, and an overlay video).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print JSON Lines instead of text: one object "
        "per input, in input order, printed as soon as it "
        "is known; a failed input's object has 'path' and "
        "'error'.",
    )
    timeline_cli.add_arguments(parser)
    return parser


def _emit(record, as_json):
    if as_json:
        print(cliutil.dumps_json(record, indent=None), flush=True)


def _print_text(path, result, explanation):
    print(
        f"{cliutil.printable(path)} "
        f"(model version {result.model_version}, {result.num_views} views):"
    )
    for name, score in result.top_k:
        print(f"  {score:7.4f}  {name}")
    if explanation is not None:
        for block in explanation["blocks"]:
            print(f"  {block['block']}: guess {block['guess']} ({block['confidence']:.2f})")
        print(
            "  explanation: "
            + ", ".join(cliutil.printable(f) for f in explanation["files"].values())
        )
    sys.stdout.flush()


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    if timeline_cli.wanted(args):
        return timeline_cli.run(args)
    from clipspec.explanation_files import output_names

    failures = 0
    tls = dict(
        ssl=args.ssl,
        ssl_ca=args.ssl_ca,
        ssl_cert=args.ssl_cert,
        ssl_key=args.ssl_key,
        ssl_target_name=args.ssl_server_name,
    )
    if args.rest:
        from serving.rest_client import RestClient
        from serving.rest_http import DEFAULT_REST_SERVER

        if any(tls.values()):
            return cliutil.fail(
                "the TLS options are for gRPC; the REST API has no TLS (as in TF Serving)"
            )
        make, server, tls = RestClient, args.server or DEFAULT_REST_SERVER, {}
    else:
        make, server = ServingClient, args.server or DEFAULT_SERVER
    try:
        client = make(server, timeout=args.timeout, retries=args.retries, **tls)
    except ValueError as error:
        return cliutil.fail(error)
    cliutil.quiet_tensorflow()  # before the stubs and protos import it
    stems = output_names(args.videos)
    overrides = dict(
        clip_length=args.clip_length,
        crop_size=args.crop_size,
        stride=args.stride,
        short_side=args.short_side,
    )
    with client:
        for path in args.videos:
            # One input's failure, whatever it is, is that input's answer;
            # the next input is classified all the same.
            try:
                result = classify_video(
                    client,
                    args.model,
                    path,
                    top_k=args.top_k,
                    version=args.version,
                    views_per_request=args.views_per_request,
                    num_clips=args.num_clips,
                    num_crops=args.num_crops,
                    **overrides,
                )
                explanation = (
                    None
                    if args.explain is None
                    else request_explanation(
                        client,
                        args.model,
                        path,
                        args.explain,
                        version=result.model_version,
                        name=stems[path],
                        **overrides,
                    )
                )
            except Exception as error:  # noqa: BLE001 — reported for this input
                failures += 1
                message = failure_reason(error)
                _emit({"path": path, "error": message}, args.json)
                if not args.json:
                    print(
                        f"{cliutil.printable(path)}: error: {cliutil.printable(message)}",
                        file=sys.stderr,
                        flush=True,
                    )
                continue
            record = result.to_json()
            if explanation is not None:
                record["explanation"] = explanation
            _emit(record, args.json)
            if not args.json:
                _print_text(path, result, explanation)
    if failures and not args.json:
        print(f"{failures} of {len(args.videos)} input(s) failed.", file=sys.stderr)
    return 1 if failures else 0


__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_SERVER",
    "DEFAULT_VIEWS_PER_REQUEST",
    "MAX_RETRIES",
    "RETRY_CODES",
    "ServingClient",
    "VideoPrediction",
    "build_parser",
    "channel_credentials",
    "classify_video",
    "main",
    "model_clip_format",
    "request_explanation",
    "retry_service_config",
    "video_views",
]


if __name__ == "__main__":
    sys.exit(main())
