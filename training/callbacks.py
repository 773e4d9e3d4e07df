"""Callbacks of a training run that survive being killed and restarted.

`keras.callbacks.BackupAndRestore` restores the weights, the optimizer and
the epoch of an interrupted run; these callbacks keep the run directory's
other files consistent with it: every file is written atomically (a kill
mid-write leaves the previous version), the CSV history drops the rows of
epochs that will be re-run, and the best-model tracker remembers the best
score of the epochs before the interruption.
"""

import csv
import math
import os
import time

import keras


def save_model_atomically(model, path):
    """`model.save(path)` through a temporary file and an atomic rename.

    A training wrapper with an `inference_model` (`DeviceAugmentedModel`)
    saves the model it wraps, without the optimizer.
    """
    model = getattr(model, "inference_model", model)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".partial-{os.getpid()}-{name}")
    model.save(partial)
    os.replace(partial, path)


def read_history(path):
    """The rows of a history CSV as dicts of floats (`[]` if absent)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    parsed = []
    for row in rows:
        parsed.append({key: _number(value) for key, value in row.items()})
    return parsed


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
    partial = f"{path}.partial"
    with open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def _resumed_epoch(model):
    """The epoch `fit` starts from (set by `BackupAndRestore` on restore)."""
    return int(getattr(model, "_initial_epoch", None) or 0)


class HistoryCSV(keras.callbacks.Callback):
    """Writes one CSV row per epoch: `epoch` (1-based), `learning_rate`,
    `epoch_seconds` and every logged metric. On a resumed run it first drops
    the rows of the epochs about to be re-run. Must come after
    `BackupAndRestore` in the callback list."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = []
        self._start = None

    def on_train_begin(self, logs=None):
        start = _resumed_epoch(self.model)
        self.rows = [r for r in read_history(self.path) if r["epoch"] <= start]
        if self.rows or os.path.exists(self.path):
            _write_history(self.path, self.rows)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            row["learning_rate"] = float(
                keras.ops.convert_to_numpy(optimizer.learning_rate)
            )
        row["epoch_seconds"] = round(time.perf_counter() - self._start, 3)
        row.update({key: float(value) for key, value in (logs or {}).items()})
        self.rows.append(row)
        _write_history(self.path, self.rows)


class BestModel(keras.callbacks.Callback):
    """Saves the model whenever `monitor` beats its best value so far
    (higher is better), including the epochs before a resume (read from the
    history CSV). Must come after `BackupAndRestore`."""

    def __init__(self, path, monitor, history_path):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.history_path = history_path
        self.best = -math.inf
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        start = _resumed_epoch(self.model)
        self.best, self.best_epoch = -math.inf, None
        for row in read_history(self.history_path):
            value = row.get(self.monitor)
            if row["epoch"] <= start and isinstance(value, (int, float)) and (
                value > self.best
            ):
                self.best, self.best_epoch = value, row["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"BestModel: metric {self.monitor!r} is not in the epoch logs "
                f"({', '.join(sorted(logs or {}))})."
            )
        if value > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            save_model_atomically(self.model, self.path)


class EpochCheckpoints(keras.callbacks.Callback):
    """Saves `directory/epoch_NNN.keras` after every epoch (1-based) and
    keeps only the newest `keep` of them (`keep=0`: all)."""

    def __init__(self, directory, keep=5):
        super().__init__()
        self.directory = directory
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        save_model_atomically(
            self.model, os.path.join(self.directory, f"epoch_{epoch + 1:03d}.keras")
        )
        if self.keep:
            saved = sorted(
                name for name in os.listdir(self.directory)
                if name.startswith("epoch_") and name.endswith(".keras")
            )
            for name in saved[: -self.keep]:
                os.remove(os.path.join(self.directory, name))
