"""Callbacks of a training run that survive being killed and restarted.

`keras.callbacks.BackupAndRestore` restores the weights, the optimizer and
the epoch of an interrupted run; these callbacks keep the run directory's
other files consistent with it. Keras reports the epoch a resumed `fit`
starts from as the first `on_epoch_begin(epoch)`, and that is all they
need to know:

- `HistoryCSV`: one CSV row per epoch (with the learning rate and the
  epoch's seconds, which Keras's `CSVLogger` does not log); on a resumed run
  it drops the rows of the epochs about to be re-run.
- `BestModel`: Keras's `ModelCheckpoint(save_best_only=True)`, remembering
  the best score of the epochs before an interruption (from the history),
  writing atomically (a kill mid-write leaves the previous `best.keras`).
- `EpochCheckpoints`: Keras's `ModelCheckpoint` per epoch, keeping the
  newest few.

The two checkpoint callbacks save the model a training wrapper trains
(`DeviceAugmentedModel.inference_model`) rather than the wrapper.
"""

import csv
import math
import os
import time

import keras

import cliutil


def save_model_atomically(model, path):
    """`model.save(path)` through a temporary file and an atomic rename.

    A training wrapper with an `inference_model` (`DeviceAugmentedModel`)
    saves the model it wraps, without the optimizer.
    """
    model = getattr(model, "inference_model", model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with cliutil.atomic_path(os.path.abspath(path)) as partial:
        model.save(partial)


def read_history(path):
    """The rows of a history CSV as dicts of floats (`[]` if absent)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [{key: _number(value) for key, value in row.items()} for row in rows]


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value


def _write_history(path, rows):
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with (
        cliutil.atomic_path(path) as partial,
        open(partial, "w", newline="", encoding="utf-8") as file,
    ):
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


class _FirstEpochMixin:
    """Calls `on_resume(first_epoch)` at the first `on_epoch_begin` of each
    `fit`: the 0-based epoch `fit` starts from (after `BackupAndRestore`
    restored an interrupted run, the one after its last finished epoch)."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if not getattr(self, "_resumed", False):
            self._resumed = True
            self.on_resume(epoch)

    def on_resume(self, first_epoch):
        raise NotImplementedError


class _SavesInferenceModel:
    """Checkpoints hold the model a training wrapper trains, not the wrapper."""

    def set_model(self, model):
        super().set_model(getattr(model, "inference_model", model))


class HistoryCSV(_FirstEpochMixin, keras.callbacks.Callback):
    """Writes one CSV row per epoch: `epoch` (1-based), `learning_rate`,
    `epoch_seconds` and every logged metric. A resumed run first drops the
    rows of the epochs about to be re-run."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = []
        self._start = None

    def on_resume(self, first_epoch):
        self.rows = [r for r in read_history(self.path) if r["epoch"] <= first_epoch]
        if self.rows or os.path.exists(self.path):
            _write_history(self.path, self.rows)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        row["epoch_seconds"] = round(time.perf_counter() - self._start, 3)
        row.update({key: float(value) for key, value in (logs or {}).items()})
        self.rows.append(row)
        _write_history(self.path, self.rows)


class BestModel(_SavesInferenceModel, _FirstEpochMixin, keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint(save_best_only=True, mode="max")` for `path`, which
    also counts the epochs before a resume (their scores are read from the
    history CSV) and replaces `path` atomically.

    Attributes:
        best: the best `monitor` value so far; `best_epoch`: its 1-based
            epoch (`None` before the first).
    """

    def __init__(self, path, monitor, history_path):
        self.final_path = os.fspath(path)
        super().__init__(
            # written by Keras under a temporary name, renamed below
            cliutil.partial_path(os.path.abspath(self.final_path)),
            monitor=monitor,
            mode="max",
            save_best_only=True,
        )
        self.history_path = history_path
        self.best_epoch = None

    def on_resume(self, first_epoch):
        self.best, self.best_epoch = -math.inf, None
        for row in read_history(self.history_path):
            value = row.get(self.monitor)
            if (
                row["epoch"] <= first_epoch
                and isinstance(value, (int, float))
                and value > self.best
            ):
                self.best, self.best_epoch = value, row["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor) is None:  # Keras only warns
            raise KeyError(
                f"BestModel: metric {self.monitor!r} is not in the epoch logs "
                f"({', '.join(sorted(logs or {}))})."
            )
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:  # ModelCheckpoint saved an improvement
            os.replace(self.filepath, self.final_path)
            self.best, self.best_epoch = float(self.best), epoch + 1


class EpochCheckpoints(_SavesInferenceModel, keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` writing `directory/epoch_NNN.keras` after every
    epoch (1-based) and keeping only the newest `keep` of them (`keep=0`:
    all). A kill while one is written leaves it partial; the resumed run
    re-runs that epoch and writes it again."""

    def __init__(self, directory, keep=5):
        super().__init__(os.path.join(directory, "epoch_{epoch:03d}.keras"))
        self.directory = directory
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs or {})
        if self.keep:
            saved = sorted(
                name
                for name in os.listdir(self.directory)
                if name.startswith("epoch_") and name.endswith(".keras")
            )
            for name in saved[: -self.keep]:
                os.remove(os.path.join(self.directory, name))
