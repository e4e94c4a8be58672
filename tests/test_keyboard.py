"""Keyboard controls: the step rule on its own, then `tempest-jax train` under a pseudo-terminal
driven by key presses (save, help, a few settings, quit) as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import termios

import pytest
from train_process import (
    START_TIMEOUT_S,
    OutputWatcher,
    checkpoint_steps,
    train_command,
    train_env,
    wait_until,
)

from tempest_jax.keyboard import step_probability

KEY_TIMEOUT_S = 30  # the keyboard thread answers at once, unless the machine is swamped
MAIN_LOOP_TIMEOUT_S = 120  # rows and saves wait while the learner's first dispatch compiles


def test_step_probability():
    assert step_probability(0.05, up=True) == 0.06
    assert step_probability(0.09, up=True) == 0.10
    assert step_probability(0.10, up=True) == 0.15
    assert step_probability(0.15, up=False) == 0.10
    assert step_probability(0.10, up=False) == 0.09
    assert step_probability(0.0, up=False) == 0.0
    assert step_probability(0.98, up=True) == 1.0


@pytest.mark.timeout(600)
def test_keys_drive_a_training_run_under_a_terminal(tmp_path):
    run_dir = tmp_path / "keys"
    master, slave = os.openpty()
    mode_before = termios.tcgetattr(master)  # a pty master reads its terminal's mode
    process = subprocess.Popen(
        train_command(run_dir, "run.checkpoint_interval_s=1000", "run.log_interval_s=0.5"),
        stdin=slave, stdout=slave, stderr=slave, env=train_env(), start_new_session=True)
    os.close(slave)  # the child holds it now; the master reads EIO once the child is gone
    try:
        output = OutputWatcher(master)
        output.wait_for(r"^keys: q quit", START_TIMEOUT_S)
        output.wait_for(r"^\s+frames\s+fps.*\r?\n\s+[\d,]+\s.*\n", START_TIMEOUT_S)
        assert checkpoint_steps(run_dir) == set()
        mark = len(output.text)

        os.write(master, b"s")
        output.wait_for(r"^s: checkpoint requested", KEY_TIMEOUT_S, mark)
        # The main loop saves between the learner's dispatches; the first one compiles.
        output.wait_for(r"checkpoint \d+ started", MAIN_LOOP_TIMEOUT_S, mark)
        wait_until(lambda: checkpoint_steps(run_dir), MAIN_LOOP_TIMEOUT_S,
                   "the checkpoint directory")

        os.write(master, b"?")
        keys = output.wait_for(r"^keys:\r?\n(.*\r?\n)*?.*\?\s+this list", KEY_TIMEOUT_S, mark)[0]
        for action in ("quit: save a checkpoint and exit", "save a checkpoint now",
                       "learning rate ×2 / ×½"):
            assert action in keys

        os.write(master, b"eLrv")
        output.wait_for(r"^e: ε fixed at", KEY_TIMEOUT_S, mark)
        output.wait_for(r"^L: learning rate ×2 ", KEY_TIMEOUT_S, mark)
        output.wait_for(r"^replay: [\d,]+ / 20,000 transitions", KEY_TIMEOUT_S, mark)
        verbose = output.wait_for(r"^v: verbose on", KEY_TIMEOUT_S, mark).end()
        # The learner line after the next row.
        output.wait_for(r"^  .*lr_scale 2 ", MAIN_LOOP_TIMEOUT_S, verbose)

        os.write(master, b"q")
        output.wait_for(r"^q: quitting", KEY_TIMEOUT_S, mark)
        assert process.wait(timeout=120) == 0
        final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert final["final"] and final["epsilon_override"] is not None
        assert final["lr_scale"] == 2.0
        assert final["updates"] in checkpoint_steps(run_dir)
        # The child put the terminal back as it found it.
        assert termios.tcgetattr(master) == mode_before
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
