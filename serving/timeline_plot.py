"""A PNG picture of a timeline: class probabilities over time.

Readable for 5 classes as for 400: only the top classes get a line (those
that are the top class of the most windows, then those reaching the
highest probability; `max_classes`, default 8), the others together are
one grey line (their highest probability per window), and a legend names
the lines. A band above the curves shows the segments, coloured as the
lines (grey: a class without a line).

>>> plot = TimelinePlot(class_names=["run", "walk"])             # doctest: +SKIP
>>> plot.add(result)                                             # doctest: +SKIP
>>> plot.add_segment(segment)                                    # doctest: +SKIP
>>> plot.save("timeline.png", title="a.mp4")                     # doctest: +SKIP
"""

import numpy as np

DEFAULT_MAX_CLASSES = 8
_OTHER = "#9a9a9a"


def choose_classes(probabilities, max_classes=DEFAULT_MAX_CLASSES):
    """Class indices to draw, most important first: by windows won, then
    by the highest probability reached."""
    probabilities = np.asarray(probabilities)
    wins = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    peak = probabilities.max(axis=0)
    order = np.lexsort((-peak, -wins))  # the last key sorts first
    return [int(i) for i in order[: min(max_classes, probabilities.shape[1])]]


class TimelinePlot:
    """Collects window results and segments, then draws them (`save`).

    Memory: one row of K probabilities per window (an hour at a 0.6 s hop
    and 400 classes: about 10 MB).
    """

    def __init__(self, class_names=None, max_classes=DEFAULT_MAX_CLASSES):
        self.class_names = class_names
        self.max_classes = max_classes
        self.times, self.rows, self.segments = [], [], []

    def add(self, result):
        self.times.append((result.window.start, result.window.end))
        self.rows.append(np.asarray(result.probabilities, np.float32))

    def add_segment(self, segment):
        self.segments.append(segment)

    def save(self, path, title=""):
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import pyplot

        if not self.rows:
            raise ValueError("No windows to plot.")
        probabilities = np.stack(self.rows)
        names = list(self.class_names or [f"class {i}" for i in range(probabilities.shape[1])])
        centres = np.array([(a + b) / 2 for a, b in self.times])
        shown = choose_classes(probabilities, self.max_classes)
        colours = pyplot.get_cmap("tab10" if len(shown) <= 10 else "tab20")
        colour_of = {names[c]: colours(i) for i, c in enumerate(shown)}
        figure, (band, curves) = pyplot.subplots(
            2,
            1,
            figsize=(12, 4.8),
            sharex=True,
            gridspec_kw={"height_ratios": [1, 6], "hspace": 0.08},
        )
        for segment in self.segments:
            band.axvspan(
                segment.start,
                segment.end,
                color=colour_of.get(segment.label, _OTHER),
                linewidth=0,
            )
        band.set_yticks([])
        band.set_ylabel("segments", rotation=0, ha="right", va="center")
        for c in shown:
            curves.plot(centres, probabilities[:, c], color=colour_of[names[c]], label=names[c])
        rest = [c for c in range(probabilities.shape[1]) if c not in shown]
        if rest:
            curves.plot(
                centres,
                probabilities[:, rest].max(axis=1),
                color=_OTHER,
                linestyle="--",
                linewidth=1,
                label=f"other {len(rest)} classes (highest)",
            )
        curves.set_ylim(0, 1)
        curves.set_xlim(min(a for a, _ in self.times), max(b for _, b in self.times))
        curves.set_xlabel("time in the video (s)")
        curves.set_ylabel("probability")
        curves.grid(alpha=0.3)
        curves.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        if title:
            band.set_title(title, fontsize=10)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        pyplot.close(figure)


__all__ = ["DEFAULT_MAX_CLASSES", "TimelinePlot", "choose_classes"]
