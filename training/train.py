"""Train a video classifier with (or without) Class Regularization.

The library entry point is `train(config) -> run_dir`; the command line

    python -m training.train --data prepared/ --run-dir runs/r18 \\
        --model resnet18_3d --epochs 30 --batch-size 16

is a thin wrapper around it (`--config FILE.yaml` reads the same fields from
a file; flags override it). Re-running the same command on the same
`--run-dir` resumes an interrupted run (`BackupAndRestore`); re-running a
finished run does nothing.

The run directory is described (and read) by `clipspec.rundir.RunDir`:
config.json, clip_format.json, best.keras, final.keras, summary.json,
checkpoints/, backup/, history.csv, tensorboard/ and, under TF_CONFIG,
workers/.
"""

import contextlib
import dataclasses
import os
import re
import sys
import time
import warnings

import cliutil
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, ClipFormat
from clipspec.rundir import RunDir, load_model
from training import data as video_data
from training import onednn
from training.config import (
    DEFAULT_MODEL,
    TrainConfig,
    add_config_arguments,
    config_from_args,
)

# TensorFlow, Keras and the modules built on them are imported inside the
# functions that use them (after `cliutil.quiet_tensorflow()` in `main`), so
# that `--help` answers at once.

# Fields that may differ when an interrupted run is resumed (`xla` changes
# how the steps run, not what they compute, so a run started under another
# XLA choice, e.g. an older default, resumes).
RESUMABLE_CHANGES = ("verbose", "devices", "data", "run_dir", "xla")


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
def model_of(config, num_classes, model_builder=None):
    """The model a `TrainConfig` describes (call inside the strategy's
    scope); a given `model_builder` replaces the one `config.model` names."""
    from training import model_building

    return model_building.build_model(
        config.model or DEFAULT_MODEL,
        num_classes,
        (config.clip_length, config.crop_size, config.crop_size, 3),
        model_builder=model_builder,
        class_regularization=config.class_regularization,
        affection_rates=config.affection_rates,
        dropout=config.dropout,
        class_regularization_options=config.class_regularization_options or None,
        **(config.model_options or {}),
    )


def inherit_from_init_source(config, source):
    """`config` with `model`, `model_options`, `mean` and `std` taken from the
    `--init-from` run's config (`source`, a dict) where `config` leaves them
    unset: the weights expect the architecture and the input normalisation
    they were trained (or published) with.

    Returns:
        `(config, inherited)`: the new config and the fields taken.
    """
    inherited = {}
    if config.model is None and source.get("model"):
        inherited["model"] = source["model"]
    model = inherited.get("model", config.model or DEFAULT_MODEL)
    if (
        config.model_options is None
        and source.get("model_options")
        and source.get("model") == model
    ):
        inherited["model_options"] = dict(source["model_options"])
    for name in ("mean", "std"):
        if getattr(config, name) is None and source.get(name) is not None:
            inherited[name] = [float(v) for v in source[name]]
    return dataclasses.replace(config, **inherited), inherited


_STAGE = re.compile(r"^(.*?)(?:_block\d+|_Branch_\d|_conv|_bn|_classreg|_pad)(?:_.*)?$")


def _stage_of(name):
    match = _STAGE.match(name)
    return match.group(1) if match else name


def freeze_layers(model, backbone=False, until=None):
    """Makes layers of `model` not trainable for fine-tuning.

    Args:
        backbone: freeze every layer but the classifier (the model's last
            layer) and the Class Regularization blocks.
        until: freeze the layers before the first one whose name starts
            with `until` (a stage: `stage4`, `Mixed_5b`, ...); the
            classifier and the blocks stay trainable.

    A frozen `BatchNormalization` also keeps its statistics (Keras runs it
    in inference mode).

    Returns:
        the names of the layers frozen.
    """
    import keras

    import keras_classreg

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if until is not None:
        index = next((i for i, layer in enumerate(layers) if layer.name.startswith(until)), None)
        if index is None:
            stages = list(dict.fromkeys(_stage_of(layer.name) for layer in layers if layer.weights))
            raise ValueError(
                f"--freeze-until {until!r}: no layer of model '{model.name}' has a "
                f"name starting with it. Stages of this model: {', '.join(stages)}."
            )
        candidates = layers[:index]
    elif backbone:
        candidates = layers
    else:
        return []
    classifier = layers[-1]
    frozen = []
    for layer in candidates:
        if (
            layer is classifier
            or isinstance(layer, keras_classreg.layers.ClassRegularizationBase)
            or not layer.weights
        ):
            continue
        layer.trainable = False
        frozen.append(layer.name)
    return frozen


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def _one_hot(num_classes):
    import tensorflow as tf

    def convert(clips, labels):
        return clips, tf.one_hot(labels, num_classes)

    return convert


def make_datasets(config, manifest, num_classes, replicas=1):
    """`(train, validation or None, steps_per_epoch, validation_steps)`.

    With several replicas, every validation batch is padded to a multiple of
    `replicas` with zero-weight copies of its first clip, so that no replica
    gets an empty share of the last partial batch (TensorFlow's oneDNN
    batch normalisation fails on an empty batch: "Incompatible shapes:
    [C] vs. [0,T,H,W,C]"). The padding carries sample weight 0, so it
    changes no metric; in the last batch's mean loss it counts as a zero
    loss."""
    import tensorflow as tf

    mean, std = _normalisation(config)
    options = tf.data.Options()
    # Shard by element so that any number of shard files works with any
    # number of workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train = video_data.clip_dataset(
        config.data,
        subset="train",
        mode="train",
        clip_length=config.clip_length,
        stride=config.stride,
        crop_size=config.crop_size,
        batch_size=config.batch_size,
        mean=mean,
        std=std,
        deterministic=config.deterministic,
        seed=config.seed,
        shuffle=True,
        repeat=True,
        augmentation=config.augmentation,
        flip=config.flip,
        augment_on=config.augment_on,
    )
    train = train.map(_one_hot(num_classes)).with_options(options)
    train_videos = manifest_videos(manifest, "train")
    steps = config.steps_per_epoch or max(1, train_videos // config.batch_size)
    if not config.validation:
        return train, None, steps, None
    val_videos = manifest_videos(manifest, config.val_subset)
    if val_videos == 0:
        raise ValueError(
            f"Validation subset {config.val_subset!r} of {config.data} has no "
            "videos; pass --val-subset or --no-validation."
        )
    val = video_data.clip_dataset(
        config.data,
        subset=config.val_subset,
        mode="test",
        clip_length=config.clip_length,
        stride=config.stride,
        crop_size=config.crop_size,
        batch_size=config.batch_size,
        num_clips=config.val_num_clips,
        num_crops=1,
        mean=mean,
        std=std,
    )
    # Repeated, with the exact number of (partial last) batches per epoch:
    # Keras keeps one validation iterator across epochs when validation_steps
    # is given, so a finite dataset would run out in epoch 2.
    val = val.repeat().map(_views_to_pairs(num_classes, replicas)).with_options(options)
    val_steps = -(-val_videos * config.val_num_clips // config.batch_size)
    return train, val, steps, val_steps


def _views_to_pairs(num_classes, replicas=1):
    """Test-mode `(clips, labels, video_ids)` → `(clips, one-hot labels)`;
    with several replicas `(clips, one-hot labels, sample weights)`, each
    batch padded to a multiple of `replicas` (see `make_datasets`)."""
    import tensorflow as tf

    def convert(clips, labels, video_ids):
        del video_ids  # validation scores views (clips) one by one
        return clips, tf.one_hot(labels, num_classes)

    def padded(clips, labels, video_ids):
        clips, targets = convert(clips, labels, video_ids)
        size = tf.shape(clips)[0]
        missing = tf.math.floormod(-size, replicas)
        first = tf.zeros([missing], tf.int32)
        weights = tf.concat([tf.ones([size]), tf.zeros([missing])], axis=0)
        return (
            tf.concat([clips, tf.gather(clips, first)], axis=0),
            tf.concat([targets, tf.gather(targets, first)], axis=0),
            weights,
        )

    return convert if replicas == 1 else padded


def manifest_videos(manifest, subset):
    subsets = manifest.get("subsets", {})
    if subset not in subsets:
        raise ValueError(
            f"Subset {subset!r} is not in the dataset manifest (subsets: "
            f"{', '.join(subsets) or 'none'})."
        )
    return int(subsets[subset].get("videos", 0))


def _normalisation(config):
    mean = DEFAULT_MEAN if config.mean is None else config.mean
    std = DEFAULT_STD if config.std is None else config.std
    return [float(v) for v in mean], [float(v) for v in std]


def clip_format_of(config, manifest):
    """The run's `ClipFormat`: the clips it trains on, the test-time views
    it is evaluated and served with, and its classes."""
    mean, std = _normalisation(config)
    return ClipFormat(
        clip_length=config.clip_length,
        stride=config.stride,
        crop_size=config.crop_size,
        short_side=max(int(manifest.get("short_side") or 0), config.crop_size)
        if manifest.get("short_side")
        else None,
        num_clips=config.num_clips,
        num_crops=config.num_crops,
        mean=mean,
        std=std,
        class_names=manifest["class_names"],
    )


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def resolved_config(config, manifest, strategy, steps_per_epoch):
    """The config as saved in `config.json`: fields plus derived values."""
    import keras
    import tensorflow as tf

    import keras_classreg
    from training import distribute

    mean, std = _normalisation(config)
    values = config.to_dict()
    values.update(
        data=os.path.abspath(config.data),
        run_dir=os.path.abspath(config.run_dir),
        num_classes=len(manifest["class_names"]),
        class_names=list(manifest["class_names"]),
        input_shape=[config.clip_length, config.crop_size, config.crop_size, 3],
        mean=mean,
        std=std,
        steps_per_epoch_resolved=steps_per_epoch,
        train_videos=manifest_videos(manifest, "train"),
        num_replicas=strategy.num_replicas_in_sync,
        num_workers=distribute.num_workers(strategy),
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_classreg": keras_classreg.__version__,
        },
    )
    return values


def _check_resume(run, values):
    """Refuses to resume a run whose saved config differs from this one."""
    saved = run.config
    # A field added after the run started counts as having its default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    fields = list(defaults)
    derived = (
        "num_classes",
        "class_names",
        "input_shape",
        "mean",
        "std",
        "steps_per_epoch_resolved",
    )
    differing = [
        name
        for name in fields + list(derived)
        if name not in RESUMABLE_CHANGES and saved.get(name, defaults.get(name)) != values.get(name)
    ]
    if differing:
        details = "; ".join(
            f"{name}: saved {saved.get(name)!r}, now {values.get(name)!r}" for name in differing
        )
        if run.is_finished:
            raise ValueError(
                f"{run.path} is a finished run (final.keras exists) with "
                f"other settings ({details}); a finished run is not trained "
                "further. To train longer or differently, start a new "
                f"--run-dir, e.g. with --init-from {run.path}."
            )
        raise ValueError(
            f"{run.path} holds a run with a different config "
            f"({details}). Resume it with the same settings, or choose a new "
            "--run-dir."
        )


def check_training_data(config, manifest):
    """Raises `ValueError` when the prepared data cannot train (no such
    subset, no training video); returns warnings (classes without training
    or validation videos: the model cannot learn them / their accuracy is
    not measured)."""
    subsets = manifest.get("subsets", {})
    root = manifest.get("root", config.data)
    skipped = len(manifest.get("skipped", []))
    videos = manifest_videos(manifest, "train") if "train" in subsets else 0
    if not videos:
        why = (
            f"all {skipped} video(s) it lists were skipped by prepare (see "
            "'skipped' in its manifest.json)"
            if skipped
            else "its manifest lists no training videos"
        )
        raise ValueError(f"--data {root} has no training videos: {why}.")
    warned = []
    check = [("train", "the model cannot learn them")]
    if config.validation and config.val_subset in subsets:
        check.append((config.val_subset, "their validation accuracy is not measured"))
    for subset, consequence in check:
        empty = [name for name, count in subsets[subset].get("per_class", {}).items() if not count]
        if empty:
            warned.append(
                f"{len(empty)} class(es) have no {subset} videos in "
                f"{root} ({', '.join(empty)}): {consequence}."
            )
    return warned


def train(config, model_builder=None):
    """Trains a model as `config` says and returns its run directory.

    Args:
        config: a `TrainConfig` or a dict of its fields.
        model_builder: optional callable replacing `config.model`'s builder
            (same keyword arguments as the zoo builders), e.g. a custom
            architecture; `config.model` is then only recorded.

    Returns:
        the absolute run directory (see the module docstring for its files).

    Example (a few seconds on CPU, with data from `python -m training.prepare`):

        run_dir = train({"data": "prepared", "run_dir": "runs/tiny",
                         "model": "resnet18_3d", "clip_length": 4,
                         "crop_size": 32, "epochs": 1})
    """
    from training import distribute

    config, init_source, inherited = _checked_config(config)
    # Everything a user can get wrong is checked before the run directory
    # is created or written.
    manifest = _checked_data(config, model_builder)
    strategy = distribute.make_strategy(config.devices)
    run_dir, run, is_chief = _run_directory(config)
    train_data, val_data, steps, val_steps = _seeded_datasets(
        config, manifest, strategy.num_replicas_in_sync
    )
    values, xla = _run_settings(config, manifest, strategy, steps, inherited, model_builder)
    if _finished_already(run, values, config):
        return run_dir
    _start_run_files(run, values, config, manifest)
    _log(config, xla.reason)
    num_classes = len(manifest["class_names"])
    with _dtype_policy(config, xla):
        with strategy.scope():
            model = _model_to_train(
                config, num_classes, model_builder, run, values, init_source, inherited
            )
            _compile(model, config, xla, steps, num_classes)
        distribute.patch_multi_worker_build(model, strategy, train_data.element_spec)
        callbacks, best = _callbacks(config, run, is_chief, has_validation=val_data is not None)
        history, seconds = _fit(
            model,
            config,
            strategy,
            run,
            is_chief,
            callbacks,
            train_data,
            val_data,
            steps,
            val_steps,
        )
    if is_chief:
        _write_summary(config, run, best, history, seconds, steps, xla)
        _log(
            config,
            f"run finished: {run_dir} (best epoch {best.best_epoch}, "
            f"{best.monitor} {best.best:.4f})",
        )
    return run_dir


# ---------------------------------------------------------------------------
# The steps of `train`, in order
# ---------------------------------------------------------------------------
def _checked_config(config):
    """`(config, init_source, inherited)`: `config` as a validated
    `TrainConfig`, completed from its `--init-from` run's config
    (`init_source`; the fields taken: `inherited`)."""
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    config.validate()
    inherited, init_source = {}, {}
    if config.init_from:
        source_run, _ = RunDir.for_model(config.init_from)
        if source_run is not None and source_run.has_config:
            init_source = source_run.config
            config, inherited = inherit_from_init_source(config, init_source)
    config = dataclasses.replace(config, model=config.model or DEFAULT_MODEL)
    config.validate()
    return config, init_source, inherited


def _checked_data(config, model_builder):
    """The prepared dataset's manifest, once the data (warnings for classes
    without videos) and the model name are checked."""
    from training import model_building

    manifest = video_data.load_manifest(config.data)
    for line in check_training_data(config, manifest):
        warnings.warn(cliutil.DataWarning(line), stacklevel=3)
    if model_builder is None:
        model_building.resolve_model_builder(config.model)
    return manifest


def _run_directory(config):
    """`(run_dir, this process's RunDir, is_chief)`: the run directory,
    created (a non-chief worker writes in its `workers/` folder)."""
    from training import distribute

    task_type, task_index, is_chief = distribute.worker_role()
    run_dir = os.path.abspath(config.run_dir)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise NotADirectoryError(
            f"--run-dir {run_dir}: a file is in the way (expected a directory)."
        )
    chief_run = RunDir(run_dir, create=True)
    run = chief_run if is_chief else RunDir(chief_run.worker(task_type, task_index), create=True)
    return run_dir, run, is_chief


def _seeded_datasets(config, manifest, replicas=1):
    """`make_datasets`, after seeding (and, for deterministic runs,
    TensorFlow's deterministic ops)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    return make_datasets(config, manifest, len(manifest["class_names"]), replicas)


def _run_settings(config, manifest, strategy, steps, inherited, model_builder):
    """`(values, xla)`: what `config.json` records, and the XLA decision."""
    import keras_classreg
    from training import compilation, distribute

    values = resolved_config(config, manifest, strategy, steps)
    xla = compilation.resolve_xla(
        config.xla,
        strategy,
        config.deterministic,
        distribute.num_workers(strategy),
        zoo_model=model_builder is None and config.model in keras_classreg.models.names(),
        mixed_precision=config.mixed_precision,
    )
    values["xla_compiled"] = xla.enabled
    values["onednn"] = onednn.onednn_enabled()
    if inherited:
        values["init_from_inherited"] = sorted(inherited)
    return values, xla


def _finished_already(run, values, config):
    """Checks that a resumed run is the same run (`_check_resume`); True
    when it has finished already (nothing to do)."""
    if not run.has_config:
        return False
    _check_resume(run, values)
    if run.is_finished:
        _log(config, f"{run.path} is a finished run (final.keras exists); nothing to do.")
        return True
    return False


def _start_run_files(run, values, config, manifest):
    """Removes what a killed earlier process half-wrote, then writes
    `config.json` and `clip_format.json`."""
    run.remove_partial_files()
    run.write_config(values)
    run.write_clip_format(clip_format_of(config, manifest))


@contextlib.contextmanager
def _dtype_policy(config, xla):
    """Keras's dtype policy for the run (`mixed_float16` with
    `--mixed-precision`), restored afterwards."""
    import keras
    import tensorflow as tf

    if config.mixed_precision and not tf.config.list_logical_devices("GPU") and not xla.enabled:
        warnings.warn(
            "--mixed-precision without a GPU and without XLA: TensorFlow has no "
            "float16 CPU kernels for some 3D ops (e.g. MaxPool3D); train with "
            "XLA on (the default, one replica) or in float32 on CPU.",
            stacklevel=4,
        )
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _model_to_train(config, num_classes, model_builder, run, values, init_source, inherited):
    """The model (built inside the strategy's scope): started from
    `--init-from`'s weights, frozen as asked, wrapped for on-device
    augmentation."""
    import keras_classreg
    from training import device_augmentation

    model = model_of(config, num_classes, model_builder)
    if config.init_from:
        _start_from(model, config, run, values, init_source, inherited)
    frozen = freeze_layers(model, config.freeze_backbone, config.freeze_until)
    if frozen:
        values["frozen_layers"] = len(frozen)
        run.write_config(values)
        _log(config, f"frozen: {len(frozen)} layers ({frozen[0]} ... {frozen[-1]})")
    if config.augment_on == "device":
        mean, std = _normalisation(config)
        model = device_augmentation.DeviceAugmentedModel(
            model, keras_classreg.ClipAugmentation(config.crop_size, mean, std)
        )
    return model


def _start_from(model, config, run, values, init_source, inherited):
    """Copies `--init-from`'s weights into `model` by layer name (not the
    classifier of other classes, even of the same size); records the
    report in `config.json` and logs it."""
    from training import model_building

    _, source_path = RunDir.for_model(config.init_from)
    source = load_model(source_path)
    source_classes = init_source.get("class_names")
    other_classes = source_classes is not None and list(source_classes) != values["class_names"]
    skip = (model.layers[-1].name,) if other_classes else ()
    report = model_building.transfer_weights(source, model, skip=skip)
    del source
    values["init_from_report"] = report
    run.write_config(values)
    _log(
        config,
        f"init-from {source_path}: {len(report['transferred'])} layers "
        f"transferred, {len(report['new'])} new "
        f"({', '.join(report['new']) or '-'}), "
        f"{len(report['mismatched'])} shape-mismatched "
        f"({', '.join(report['mismatched']) or '-'})"
        + (f"; from its config: {', '.join(sorted(inherited))}" if inherited else ""),
    )
    _note_clip_format(config, init_source)


def _compile(model, config, xla, steps, num_classes):
    """Compiles with the optimizer, loss and top-1/top-5 metrics of
    `config`, with or without XLA."""
    import keras

    from training import compilation, optimization

    compilation.compile_model(
        model,
        xla.enabled,
        optimizer=optimization.make_optimizer(config, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5"),
        ],
    )


def _callbacks(config, run, is_chief, has_validation):
    """`(callbacks, best)`: resume from `backup/` on every worker; on the
    chief also history.csv, best.keras (`best`), checkpoints/ and
    tensorboard/."""
    import keras

    from training import callbacks as run_callbacks

    history_path = str(run.file("history.csv"))
    best = run_callbacks.BestModel(
        str(run.file("best.keras")),
        monitor="val_top1" if has_validation else "top1",
        history_path=history_path,
    )
    callbacks = []
    if is_chief:
        callbacks += [
            run_callbacks.HistoryCSV(history_path),
            best,
            run_callbacks.EpochCheckpoints(
                str(run.file("checkpoints")), keep=config.keep_checkpoints
            ),
            keras.callbacks.TensorBoard(str(run.file("tensorboard")), write_graph=False),
        ]
    # Last, so an epoch is marked done (backed up) only once its files are
    # written: a kill before the backup re-runs the epoch and writes them
    # again (backing up first, a kill between the two would lose the
    # epoch's checkpoint for good).
    callbacks.append(
        keras.callbacks.BackupAndRestore(str(run.file("backup")), double_checkpoint=True)
    )
    return callbacks, best


def _fit(model, config, strategy, run, is_chief, callbacks, train_data, val_data, steps, val_steps):
    """`(history, seconds)`: `model.fit`, then `final.keras`, once every
    worker has saved."""
    from training import callbacks as run_callbacks
    from training import distribute

    started = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=val_data,
        validation_steps=val_steps,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=config.verbose if is_chief else 0,
    )
    run_callbacks.save_model_atomically(model, run.file("final.keras"))
    distribute.barrier(strategy)  # every worker has saved before any exits
    return history, time.perf_counter() - started


def _write_summary(config, run, best, history, seconds, steps, xla):
    """`summary.json`: the best epoch, the last epoch's metrics, and this
    process's time."""
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    run.write_summary(
        {
            "best_epoch": best.best_epoch,
            "best_" + best.monitor: best.best,
            "last_epoch_metrics": last,
            "epochs_run_in_this_process": len(history.epoch),
            "seconds_in_this_process": round(seconds, 1),
            # fit's wall time per training step, validation and checkpoints
            # included
            "seconds_per_step": round(seconds / max(1, len(history.epoch) * steps), 3),
            "xla_compiled": xla.enabled,
            "onednn": onednn.onednn_enabled(),
        }
    )


def _note_clip_format(config, source):
    """Says when the clips differ from those published weights saw."""
    differing = [
        f"{name} {getattr(config, name)} (the weights': {source[name]})"
        for name in ("clip_length", "stride", "crop_size")
        if source.get(name) is not None and source[name] != getattr(config, name)
    ]
    if differing and source.get("pretrained"):
        _log(
            config, "note: clips differ from the published weights' format: " + ", ".join(differing)
        )


def _log(config, message):
    if config.verbose:
        print(f"[train] {message}", flush=True)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m training.train",
        description=(
            "Train a 3D CNN with (or without) Class Regularization on a "
            "dataset prepared by `python -m training.prepare`. Uses "
            "MirroredStrategy over all local GPUs (CPU when none), or "
            "MultiWorkerMirroredStrategy when TF_CONFIG is set. Re-run the "
            "same command to resume an interrupted run."
        ),
        epilog=(
            "Example: python -m training.train --data prepared --run-dir "
            "runs/r18 --model resnet18_3d --clip-length 8 --crop-size 64 "
            "--epochs 10 --batch-size 8.  Paper protocol: train with "
            "--no-class-regularization, then train again with "
            "--init-from runs/base."
        ),
    )
    parser.add_argument(
        "--config",
        help="YAML or JSON file with any of the fields below (flags override it).",
    )
    add_config_arguments(parser)
    return parser


@cliutil.entry_point(resume=True)
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        # before anything imports TensorFlow, which reads it once
        _log(config, onednn.prefer_onednn(config.deterministic))
        video_data.load_manifest(config.data)  # a wrong --data fails at once
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    cliutil.quiet_tensorflow()
    try:
        with cliutil.plain_warnings():
            train(config)
    except (ValueError, OSError, ImportError) as error:
        return cliutil.fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
