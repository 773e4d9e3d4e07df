"""SGD with momentum, weight decay and a warm-up + cosine or step schedule.

Only Keras's built-in schedules are used (`CosineDecay` with its linear
warm-up; `PiecewiseConstantDecay` for the step schedule), so a saved
`.keras` file (which stores its optimizer) loads anywhere without importing
this module.

>>> schedule = learning_rate_schedule(0.1, "cosine", total_steps=100,
...                                   warmup_steps=10)
>>> round(float(schedule(10)), 6), round(float(schedule(55)), 6)
(0.1, 0.05)
"""

import keras

# Variables (by name) that get no weight decay: BatchNorm scale/shift and
# biases.
NO_DECAY = ("gamma", "beta", "bias")

# The step schedule's linear warm-up is made of at most this many constant
# pieces (one per step when the warm-up is shorter).
MAX_WARMUP_PIECES = 100


def learning_rate_schedule(
    learning_rate,
    kind,
    total_steps,
    warmup_steps=0,
    final_lr_ratio=0.0,
    step_boundaries=(),
    step_gamma=0.1,
):
    """The learning rate as a function of the optimizer step.

    Args:
        learning_rate: peak learning rate, reached at the end of the warm-up.
        kind: `"cosine"` or `"step"`.
        total_steps: training steps of the whole run.
        warmup_steps: length of the linear warm-up from 0 (0: none).
        final_lr_ratio: cosine: final / peak learning rate.
        step_boundaries: step: the steps after which the rate is multiplied
            by `step_gamma` (increasing).
        step_gamma: step: the decay factor.

    Returns:
        a `keras.optimizers.schedules.LearningRateSchedule`.
    """
    if kind == "cosine":
        warmup_steps = min(int(warmup_steps), int(total_steps))
        decay_steps = max(int(total_steps) - warmup_steps, 1)
        if warmup_steps == 0:
            return keras.optimizers.schedules.CosineDecay(
                learning_rate, decay_steps, alpha=final_lr_ratio
            )
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps,
            alpha=final_lr_ratio,
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    if kind == "step":
        boundaries, values = [], []
        warmup_steps = int(warmup_steps)
        if warmup_steps > 0:
            pieces = min(warmup_steps, MAX_WARMUP_PIECES)
            for piece in range(pieces):
                # piece i covers steps (b_{i-1}, b_i] at rate peak * (i+1)/pieces
                boundaries.append(warmup_steps * (piece + 1) // pieces - 1)
                values.append(learning_rate * (piece + 1) / pieces)
        rate = learning_rate
        for boundary in step_boundaries:
            if boundaries and boundary <= boundaries[-1]:
                raise ValueError(
                    f"Invalid step schedule: the decay step {boundary} falls "
                    f"inside the warm-up ({warmup_steps} steps)."
                )
            boundaries.append(int(boundary) - 1)
            values.append(rate)
            rate *= step_gamma
        values.append(rate)
        if not boundaries:
            return keras.optimizers.schedules.PiecewiseConstantDecay([0], [rate, rate])
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    raise ValueError(
        f"Invalid value for argument `kind`. Expected 'cosine' or 'step'. Received: kind={kind!r}"
    )


def make_optimizer(config, steps_per_epoch):
    """The SGD optimizer of a `TrainConfig` for `steps_per_epoch` steps."""
    total_steps = config.epochs * steps_per_epoch
    step_epochs = config.step_epochs
    if step_epochs is None:
        step_epochs = sorted(
            {e for e in (config.epochs // 2, (3 * config.epochs) // 4) if 0 < e < config.epochs}
        )
    schedule = learning_rate_schedule(
        config.learning_rate,
        config.lr_schedule,
        total_steps=total_steps,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        final_lr_ratio=config.final_lr_ratio,
        step_boundaries=[e * steps_per_epoch for e in step_epochs],
        step_gamma=config.step_gamma,
    )
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay or None,
    )
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer
