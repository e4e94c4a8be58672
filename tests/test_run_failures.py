"""A run whose thread fails or stalls stops loudly, names the thread, and can be resumed.

Each supervised thread of a served run (server loop, learner, replay prefetcher,
replay snapshot writer, periodic evaluator, dashboard, keyboard) gets a fault injected through
`TEMPEST_FAULT`; the run must stop within 10 s of it with `RunFailed` naming that thread, and the
newest complete checkpoint must resume. Last, `tempest-jax train` itself, in a subprocess: exit
status 1 and the thread named on stderr, then `--resume` continues the run.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re

import pytest
from run_harness import TrainerThread, TrainProcess, smoke_args

from tempest_jax import protocol as P
from tempest_jax.bench.protocol_bench import random_wire_frames
from tempest_jax.clients import ClientPool
from tempest_jax.config import load_config
from tempest_jax.keyboard import KeyboardControls
from tempest_jax.replay.writer import INSERT_EVERY_BATCHES, Replay
from tempest_jax.rundir import RunDir
from tempest_jax.supervisor import FAULT_ENV, InjectedFault, RunFailed
from tempest_jax.train import Trainer

FAILURE_TO_EXIT_S = 10.0
WIRE = random_wire_frames(8, seed=3)
FRAMES = [WIRE[i:i + P.FRAME_WIRE_SIZE] for i in range(0, len(WIRE), P.FRAME_WIRE_SIZE)]


def served_config(tmp_path, *settings: str):
    return load_config("smoke", [
        "env.source=mame", "server.port=0", "server.max_clients=4", f"run.dir={tmp_path}",
        "run.name=failing", "run.total_frames=0", "run.log_interval_s=0.5",
        "run.checkpoint_interval_s=3600", *settings])


def expect_failure(run: TrainerThread, thread: str, error: type | None) -> RunFailed:
    run.join()
    assert isinstance(run.raised, RunFailed), run.raised
    failure = run.raised.failure
    assert failure.thread == thread
    assert (isinstance(failure.error, error) if error else failure.error is None), failure
    assert f"thread '{thread}' " in str(run.raised)
    assert run.ended_at - run.failed_at < FAILURE_TO_EXIT_S
    assert run.trainer.supervisor.health()[thread]["state"] == ("failed" if error else "stalled")
    return run.raised


def expect_resume(cfg, trainer: Trainer) -> None:
    """Every thread of the failed run ended (a stalled one once the run closed), and its newest
    complete checkpoint resumes, at the counters the failed run saved."""
    for watch in trainer.supervisor.watches:
        watch.thread.join(60)
        assert not watch.alive(), watch.name
    resumed = Trainer(cfg, RunDir.open(trainer.run_dir.path), resume=True,
                      install_signal_handlers=False)
    try:
        assert resumed.updates == trainer.updates
        assert resumed.frames == trainer.frames
    finally:
        resumed.saver.checkpointer.close()


def play(address, ticks: int) -> None:
    pool = ClientPool(address, 2, timeout=300)
    try:
        for t in range(ticks):
            pool.exchange(FRAMES[2 * (t % 4): 2 * (t % 4) + 2])
    finally:
        pool.close()


@pytest.mark.parametrize(("thread", "settings"), [
    ("server", ()),
    ("learner", ()),
    ("replay-prefetch", ()),
    ("dashboard", ("dashboard.enabled=true", "dashboard.port=0")),
    ("replay-snapshot", ("replay.snapshot=true", "run.checkpoint_interval_s=1")),
    ("evaluator", ("run.eval_interval=1000",)),
])
def test_a_failing_thread_stops_the_run_and_names_itself(tmp_path, monkeypatch, thread,
                                                         settings):
    monkeypatch.setenv(FAULT_ENV, thread)
    cfg = served_config(tmp_path, *settings)
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        message = str(expect_failure(run, thread, InjectedFault))
    assert "fault injected by TEMPEST_FAULT" in message
    assert "the newest checkpoint is 0" in message
    monkeypatch.delenv(FAULT_ENV)
    expect_resume(cfg, trainer)


def test_a_failing_replay_insert_stops_the_run(tmp_path, monkeypatch):
    """The served frames' transitions are stored on the server thread: an insert that raises
    ends the run naming that thread and the error, and the frames served before it count."""

    class InsertFailed(RuntimeError):
        pass

    def failing_add(self, emission):
        raise InsertFailed("the replay refused an insert")

    monkeypatch.setattr(Replay, "add", failing_add)
    cfg = served_config(tmp_path)
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        address = run.wait_for_server()
        # The server may close the clients once the run stops; the failure is what counts.
        with contextlib.suppress(ConnectionError, OSError):
            play(address, 40)
        message = str(expect_failure(run, "server", InsertFailed))
    assert "the replay refused an insert" in message
    assert trainer.frames >= INSERT_EVERY_BATCHES
    monkeypatch.undo()
    expect_resume(cfg, trainer)


def test_a_failing_keyboard_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "keyboard")
    cfg = served_config(tmp_path)
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    controller, terminal = pty.openpty()
    try:
        with open(terminal, closefd=False) as stdin, open(os.devnull, "w") as out:
            keys = KeyboardControls(trainer.controls, trainer.status, trainer.supervisor,
                                    stdin=stdin, out=out)
            assert keys.active
            with TrainerThread(trainer) as run:
                run.wait_for_server()  # the run is up; its keyboard starts now
                with keys:
                    expect_failure(run, "keyboard", InjectedFault)
    finally:
        os.close(controller)
        os.close(terminal)
    monkeypatch.delenv(FAULT_ENV)
    expect_resume(cfg, trainer)


def test_a_stalled_learner_is_reported_and_the_run_still_saves(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "learner@3:hang")
    cfg = served_config(tmp_path, "run.stall_timeout_s=2")
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        message = str(expect_failure(run, "learner", None))
    assert "no progress for" in message and "run.stall_timeout_s = 2" in message
    monkeypatch.delenv(FAULT_ENV)
    expect_resume(cfg, trainer)


def test_train_exits_1_naming_the_failed_thread_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "cli"
    with TrainProcess(smoke_args(run_dir), env={**os.environ, FAULT_ENV: "learner@5"}) as train:
        assert train.wait() == 1, train.text
        assert re.search(r"tempest-jax: the run failed: thread 'learner' failed: InjectedFault: "
                         r"fault injected by TEMPEST_FAULT; the newest checkpoint is (\d+) in "
                         + re.escape(str(run_dir)), train.text), train.text[-3000:]
    with TrainProcess(["--resume", str(run_dir), "--frames", "400"]) as resumed:
        assert resumed.wait() == 0, resumed.text
        assert re.search(r"resumed \S+ at checkpoint 0: \d+ frames", resumed.text)
