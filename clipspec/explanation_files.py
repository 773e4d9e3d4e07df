"""Writing one clip's explanation as files: a PNG grid, a GIF, a JSON summary.

Shared by `python -m training.explain` (a local `.keras` model) and
`python -m serving.client --explain` (the export's `explain` signature), so
both write the same pictures and summaries for the same `Explanation`.

Example:

>>> summary = write_explanation(explanation, frames, class_names,   # doctest: +SKIP
...                             "explain_out", "videos/a.mp4")
>>> print(format_summary(summary))                                  # doctest: +SKIP
"""

import hashlib
import os
import pathlib

import cliutil


def output_names(paths):
    """`{path: name}`: the file-name stem each input's pictures get, unique
    per input path. A video's stem, unless another input has the same stem
    in another folder: then its last folders are joined in front
    (`a__clip`, `b__clip`), as few as tell them apart (a hash of the path
    when none do)."""
    paths = list(dict.fromkeys(os.fspath(p) for p in paths))
    by_stem = {}
    for path in paths:
        by_stem.setdefault(pathlib.Path(path).stem, []).append(path)
    names = {}
    for stem, group in by_stem.items():
        real = {os.path.realpath(p) for p in group}
        if len(group) == 1 or len(real) == 1:
            names.update({p: stem for p in group})
            continue
        parts = {p: pathlib.Path(os.path.abspath(p)).parts[:-1] for p in group}
        depth = max(len(v) for v in parts.values())
        for k in range(1, depth + 1):
            candidate = {p: "__".join(parts[p][-k:] + (stem,)) for p in group}
            if len(set(candidate.values())) == len(group):
                names.update(candidate)
                break
        else:
            names.update(
                {
                    p: f"{stem}-" + hashlib.sha256(os.fsencode(os.path.abspath(p))).hexdigest()[:8]
                    for p in group
                }
            )
    return names


def describe(explanation, class_names, sample=0, top_k=3):
    """A JSON-ready summary of one clip's explanation."""
    probabilities = explanation.probabilities[sample]
    top = probabilities.argsort()[::-1][:top_k]
    target = int(explanation.class_index[sample])
    return {
        "top_classes": [
            {"class": class_names[i], "probability": float(probabilities[i])} for i in top
        ],
        "predicted_class": class_names[int(explanation.predicted_class[sample])],
        "maps_for_class": class_names[target],
        "blocks": [
            {
                "block": name,
                "guess": class_names[int(explanation.block_classes[sample, b])],
                "confidence": float(explanation.block_confidences[sample, b]),
            }
            for b, name in enumerate(explanation.block_names)
        ],
    }


def write_explanation(
    explanation,
    frames,
    class_names,
    out_dir,
    video_name,
    sample=0,
    block=None,
    num_frames=8,
    focus=False,
    threshold=None,
    scale=None,
    fps=8.0,
    requested=False,
    name=None,
):
    """Renders one clip's explanation: `<name>_explain.png` (grid),
    `<name>_<block>.gif` (one block's overlay) and `<name>_explain.json`
    (`name`: the video's stem by default; `output_names` gives names unique
    per path for several videos).

    Args:
        explanation: a `keras_classreg.explanations.Explanation`.
        frames: uint8 `[T, H, W, 3]`, the clip exactly as the model saw it
            (before normalisation).
        class_names: the `K` class names.
        out_dir: output folder (created).
        video_name: the video's path or name, for titles and file names.
        sample: which clip of the explanation's batch.
        block: the block of the GIF (default: the deepest).
        num_frames, scale: grid columns and integer up-scaling (default:
            tiles of at least 160 px).
        focus, threshold: the focus view (threshold default 0.2).
        fps: frame rate of the GIF.
        requested: whether the maps' class was requested (for the title).

    Returns:
        the `describe` summary with `"video"` and `"files"` added.
    """
    from clipspec import render
    from keras_classreg.explanations import FOCUS_THRESHOLD

    names = explanation.block_names
    block = names[-1] if block is None else block
    if block not in names:
        raise ValueError(f"Unknown block {block!r}. The model's blocks: {', '.join(names)}.")
    if focus and threshold is None:
        threshold = FOCUS_THRESHOLD
    if scale is None:  # tiles of at least 160 px
        scale = max(1, -(-160 // min(frames.shape[1:3])))
    summary = describe(explanation, class_names, sample)
    top = " | ".join(f"{c['class']} {c['probability']:.2f}" for c in summary["top_classes"])
    title = [
        f"{cliutil.printable(pathlib.Path(video_name).name)}: model top classes: {top}",
        f"maps for class: {summary['maps_for_class']} "
        f"({'requested' if requested else 'predicted'})",
    ]
    rows = [
        (
            b["block"],
            explanation.maps[b["block"]][sample],
            f"guess: {b['guess']}\nconfidence: {b['confidence']:.2f}",
        )
        for b in summary["blocks"]
    ]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = pathlib.Path(video_name).stem if name is None else name
    png = out_dir / f"{stem}_explain.png"
    gif = out_dir / f"{stem}_{block}.gif"
    report = out_dir / f"{stem}_explain.json"
    render.save_png(
        render.render_grid(frames, rows, title, num_frames, scale, threshold=threshold), png
    )
    guess = summary["blocks"][names.index(block)]
    render.save_gif(
        render.render_animation(
            frames,
            explanation.maps[block][sample],
            caption=[
                f"{block}: {guess['guess']} {guess['confidence']:.2f}",
                f"for: {summary['maps_for_class']}",
            ],
            scale=scale,
            threshold=threshold,
        ),
        gif,
        fps=max(1.0, fps),
    )
    summary["video"] = str(video_name)
    summary["files"] = {"png": str(png), "gif": str(gif), "json": str(report)}
    _write_json(summary)
    return summary


def _write_json(summary):
    cliutil.write_json(summary["files"]["json"], summary)


def update_summary(summary, **fields):
    """Adds `fields` to a `write_explanation` summary and rewrites its JSON."""
    summary.update(fields)
    _write_json(summary)
    return summary


def format_summary(summary):
    """The per-block guesses as a small text table."""
    lines = [
        f"video: {summary['video']}",
        "model: "
        + " | ".join(f"{c['class']} {c['probability']:.3f}" for c in summary["top_classes"]),
        f"maps for class: {summary['maps_for_class']}",
        f"{'block':<24}{'guess':<24}confidence",
    ]
    for block in summary["blocks"]:
        lines.append(f"{block['block']:<24}{block['guess']:<24}{block['confidence']:.3f}")
    lines += [f"wrote {path}" for path in summary["files"].values()]
    return "\n".join(lines)


def block_agreement(summaries):
    """Per block, the fraction of clips whose block guess is the model's
    top class: how early in depth the network settles on its answer."""
    if not summaries:
        return {}
    names = [b["block"] for b in summaries[0]["blocks"]]
    return {
        name: sum(s["blocks"][i]["guess"] == s["predicted_class"] for s in summaries)
        / len(summaries)
        for i, name in enumerate(names)
    }
