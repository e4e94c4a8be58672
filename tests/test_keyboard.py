"""Keyboard controls: the step rule on its own, then `tempest-jax train` under a pseudo-terminal
driven by key presses (save, help, a few settings, quit) as a user would."""

from __future__ import annotations

import json
import termios

import pytest
from run_harness import TrainProcess, checkpoint_steps, smoke_args

from tempest_jax.keyboard import step_probability


def test_step_probability():
    assert step_probability(0.05, up=True) == 0.06
    assert step_probability(0.09, up=True) == 0.10
    assert step_probability(0.10, up=True) == 0.15
    assert step_probability(0.15, up=False) == 0.10
    assert step_probability(0.10, up=False) == 0.09
    assert step_probability(0.0, up=False) == 0.0
    assert step_probability(0.98, up=True) == 1.0


@pytest.mark.timeout(900)
def test_keys_drive_a_training_run_under_a_terminal(tmp_path):
    run_dir = tmp_path / "keys"
    with TrainProcess(smoke_args(run_dir, "run.checkpoint_interval_s=1000",
                                 "run.log_interval_s=0.5"), terminal=True) as train:
        train.wait_for(r"^keys: q quit")
        train.wait_for(r"^\s+frames\s+fps.*\r?\n\s+[\d,]+\s.*\n")
        assert checkpoint_steps(run_dir) == set()
        mark = len(train.text)

        train.send(b"s")
        train.wait_for(r"^s: checkpoint requested", mark)
        # The main loop saves between the learner's dispatches; the first one compiles.
        train.wait_for(r"checkpoint \d+ started", mark)
        train.wait_until(lambda: checkpoint_steps(run_dir), "the checkpoint directory")

        train.send(b"?")
        keys = train.wait_for(r"^keys:\r?\n(.*\r?\n)*?.*\?\s+this list", mark)[0]
        for action in ("quit: save a checkpoint and exit", "save a checkpoint now",
                       "learning rate ×2 / ×½"):
            assert action in keys

        train.send(b"eLrv")
        train.wait_for(r"^e: ε fixed at", mark)
        train.wait_for(r"^L: learning rate ×2 ", mark)
        train.wait_for(r"^replay: [\d,]+ / 20,000 transitions", mark)
        verbose = train.wait_for(r"^v: verbose on", mark).end()
        # The learner line after the next row.
        train.wait_for(r"^  .*lr_scale 2 ", verbose)

        train.send(b"q")
        train.wait_for(r"^q: quitting", mark)
        assert train.wait() == 0
        final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert final["final"] and final["epsilon_override"] is not None
        assert final["lr_scale"] == 2.0
        assert final["updates"] in checkpoint_steps(run_dir)
        # The child put the terminal back as it found it.
        assert termios.tcgetattr(train.fd) == train.terminal_mode
