"""`python -m demo.timeline_pictures`: the pictures of docs/timeline.md, made
from the real clips of `../shared/data/real-clips` (never copied into the
repository).

1. A small 3D ResNet (resnet18_3d, widen factor 0.25, clips 8 x 64 x 64,
   stride 2) is fitted on windows of the seven clips, one class per clip
   (their dataset labels): a model that knows these clips, so that the
   pictures show what a timeline looks like; it says nothing of accuracy.
2. It is exported and served (`python -m serving.server`).
3. The clips are joined into one video (128 x 160 px, 30 fps) and its
   timeline is drawn: `docs/timeline_plot.png` (`--plot`).
4. The timeline of the cartwheel clip with `--explain`: the overlay of the
   deepest block's class evidence, as `docs/timeline_overlay.gif`.

Example (CPU, a few minutes):

    python -m demo.timeline_pictures --clips ../shared/data/real-clips --out docs
"""

import argparse
import csv
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from clipspec.decode import decode_video
from clipspec.format import ClipFormat
from clipspec.sampling import eval_views

CLIP = dict(clip_length=8, stride=2, crop_size=64)
FRAME = (128, 160)  # height, width of the joined video
CARTWHEEL = "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi"


def read_labels(folder):
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        return [(row["file"], row["label"]) for row in csv.DictReader(handle)]


def training_views(folder, clips, clip_format):
    """uint8 views and labels: 12 clips x 3 crops of each video."""
    views, labels = [], []
    for label, (name, _) in enumerate(clips):
        frames, _ = decode_video(folder / name, short_side=clip_format.short_side)
        cut = eval_views(frames, clip_format.clip_length, clip_format.stride, 64, 12, 3, "loop")
        views.append(np.asarray(cut, np.uint8))
        labels += [label] * len(cut)
    return np.concatenate(views), np.array(labels)


def fit(views, labels, num_classes, clip_format, epochs, seed):
    import keras

    from keras_classreg import models

    keras.utils.set_random_seed(seed)
    model = models.get(
        "resnet18_3d",
        num_classes=num_classes,
        input_shape=(clip_format.clip_length, 64, 64, 3),
        widen_factor=0.25,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    mean, std = np.array(clip_format.mean), np.array(clip_format.std)
    inputs = ((views / 255.0 - mean) / std).astype(np.float32)
    history = model.fit(inputs, labels, batch_size=16, epochs=epochs, shuffle=True, verbose=2)
    return model, history.history["accuracy"][-1]


def joined_video(folder, clips, path, fps=30):
    """The clips one after another, each resized to `FRAME`'s height and
    centre-cropped to its width; returns each clip's start time (s)."""
    import av

    height, width = FRAME
    starts, count = [], 0
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for name, _ in clips:
            starts.append(count / fps)
            frames, _ = decode_video(folder / name, short_side=height)
            left = (frames.shape[2] - width) // 2
            for frame in frames[:, :, left : left + width]:
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), "rgb24")
                for packet in stream.encode(video_frame):
                    output.mux(packet)
                count += 1
        for packet in stream.encode():
            output.mux(packet)
    return starts


def draw(address, video, cartwheel, out, work):
    from serving.predictor import GrpcPredictor
    from serving.timeline import FileTimeline, Segmenter
    from serving.timeline_explain import TimelineExplainer
    from serving.timeline_plot import TimelinePlot

    with GrpcPredictor(address, timeout=120) as predictor:
        timeline = FileTimeline(predictor, "clips", video)
        segments, plot = Segmenter(), None
        for result in timeline:
            if plot is None:
                plot = TimelinePlot(
                    timeline.labeller.names(len(result.probabilities), result.model_version)
                )
            plot.add(result)
            segment = segments.add(result)
            if segment is not None:
                plot.add_segment(segment)
        plot.add_segment(segments.finish())
        plot.save(out / "timeline_plot.png", title="seven real clips one after another")
        explainer = TimelineExplainer(predictor, "clips", work / "explain", "cartwheel", gif=True)
        for result in FileTimeline(predictor, "clips", cartwheel):
            explainer.add(result, result.window.clip)
        explainer.close()
        shutil.copy(explainer.video.path, out / "timeline_overlay.gif")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo.timeline_pictures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--clips", type=pathlib.Path, default=pathlib.Path("../shared/data/real-clips")
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.clips / "labels.csv").is_file():
        print(f"error: no labels.csv in {args.clips} (the real clips)", file=sys.stderr)
        return 2
    from serving.client import ServingClient
    from serving.launch import LocalServer
    from training.export import export_version

    clips = read_labels(args.clips)
    clip_format = ClipFormat(**CLIP, class_names=[label for _, label in clips])
    work = pathlib.Path(tempfile.mkdtemp(prefix="timeline-pictures-"))
    try:
        views, labels = training_views(args.clips, clips, clip_format)
        model, accuracy = fit(views, labels, len(clips), clip_format, args.epochs, args.seed)
        print(f"fitted on {len(views)} views of {len(clips)} clips: accuracy {accuracy:.2f}")
        export_version(model, work / "models", "clips", clip_format)
        starts = joined_video(args.clips, clips, work / "joined.mp4")
        print("clip starts (s): " + ", ".join(f"{s:.2f}" for s in starts))
        server_args = ["--model_name=clips", f"--model_base_path={work / 'models' / 'clips'}"]
        with LocalServer(server_args, log_path=work / "server.log") as server:
            with ServingClient(server.address) as client:
                client.wait_until_available("clips")
            draw(server.address, work / "joined.mp4", args.clips / CARTWHEEL, args.out, work)
        print(f"wrote {args.out / 'timeline_plot.png'} and {args.out / 'timeline_overlay.gif'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
