"""A training run killed with SIGKILL mid-training and restarted with the
same command continues where it stopped and loses at most one epoch."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from test_train_support import (
    REPO,
    subprocess_env,
    tiny_config,
    train_command,
)

from training import callbacks as run_callbacks
from training.optimization import learning_rate_schedule

EPOCHS = 5
STEPS = 96 // 8


# A training killed and resumed in subprocesses.
pytestmark = pytest.mark.slow


def _backed_up_epoch(run_dir):
    path = os.path.join(run_dir, "backup", "training_metadata.json")
    try:
        with open(path) as file:
            return json.load(file)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("augment_on", ["host", "device"])
def test_sigkill_then_same_command_resumes(prepared_data, tmp_path, augment_on):
    run_dir = str(tmp_path / "run")
    config = tiny_config(
        prepared_data, run_dir, epochs=EPOCHS, verbose=2, warmup_epochs=1.0, augment_on=augment_on
    )
    command = train_command(config)
    first = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    first_checkpoint = os.path.join(run_dir, "checkpoints", "epoch_001.keras")
    # epoch 1 done: its checkpoint written, then backed up (the backup comes
    # last, so every epoch it marks done has its checkpoint)
    while _backed_up_epoch(run_dir) < 1 or not os.path.exists(first_checkpoint):
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    done_before_kill = _backed_up_epoch(run_dir)
    assert 1 <= done_before_kill < EPOCHS, "killed too late to test a resume"
    assert not os.path.exists(os.path.join(run_dir, "final.keras"))

    second = subprocess.run(
        command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # it started at the first epoch not backed up, not at epoch 1
    epochs_run = [int(e) for e in re.findall(rf"^Epoch (\d+)/{EPOCHS}", second.stdout, re.M)]
    assert epochs_run == list(range(done_before_kill + 1, EPOCHS + 1))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["epochs_run_in_this_process"] == EPOCHS - done_before_kill

    rows = run_callbacks.read_history(os.path.join(run_dir, "history.csv"))
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    # the optimizer's step counter was restored too: the learning rate after
    # each epoch is the schedule's at epoch * steps, across the restart
    schedule = learning_rate_schedule(
        config["learning_rate"], "cosine", total_steps=EPOCHS * STEPS, warmup_steps=STEPS
    )
    for row in rows:
        assert row["learning_rate"] == pytest.approx(
            float(schedule(row["epoch"] * STEPS)), rel=1e-5, abs=1e-9
        ), row
    assert os.path.isfile(os.path.join(run_dir, "final.keras"))
    assert os.path.isfile(os.path.join(run_dir, "best.keras"))
    assert not os.path.exists(os.path.join(run_dir, "backup"))
    saved = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert saved == [f"epoch_{e:03d}.keras" for e in range(1, EPOCHS + 1)]
