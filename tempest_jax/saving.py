"""Checkpoints of a run: the train state with the run's counters and key, and with
`replay.snapshot` a replay snapshot beside each checkpoint, written on a supervised thread while
training goes on.

Checkpoints are numbered by update count. A save with no update since the newest checkpoint
writes nothing (there is no new step to save under); at the end of a run that means the frames
collected since are in no checkpoint, and the run says so.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

from tempest_jax.checkpoint import Checkpointer
from tempest_jax.config import Config
from tempest_jax.learner import Learner
from tempest_jax.learning import Learning
from tempest_jax.replay import ReplayBuffer, save_snapshot
from tempest_jax.replay.snapshot import prune_snapshots
from tempest_jax.rundir import RunDir
from tempest_jax.supervisor import Supervisor

log = logging.getLogger(__name__)


class RunSaver:
    def __init__(self, cfg: Config, run_dir: RunDir, checkpointer: Checkpointer,
                 learner: Learner, buffer: ReplayBuffer, supervisor: Supervisor,
                 last: tuple[int, int] | None = None):
        self.cfg, self.run_dir, self.checkpointer = cfg, run_dir, checkpointer
        self.learner, self.buffer, self.supervisor = learner, buffer, supervisor
        # (step, run frames) of the newest checkpoint, as far as this process knows.
        self.last = last
        self._snapshot_lock = threading.Lock()
        self._snapshot_watch = None

    def save(self, learning: Learning, counters: Callable[[], dict[str, Any]],
             rng: jax.Array, final: bool = False) -> int:
        """Checkpoint now (the learner pauses between dispatches); the step. `final`: the run
        stops after it. The key itself is saved, not a split of it: a resumed run continues the
        same key stream."""
        with learning.lock:
            step = learning.updates
            if step in self.checkpointer.all_steps():
                self._warn_unsaved_frames(step, counters()["frames"], final)
                return step
            saved = counters()
            self.checkpointer.save(step, self.learner, learning.state, saved, self.cfg,
                                   rng=rng)
            self.last = (step, saved["frames"])
        log.info("checkpoint %d started (%d frames)", step, saved["frames"])
        if self.cfg.replay.snapshot:
            self._start_replay_snapshot(step)
        return step

    def save_final(self, learning: Learning, counters: Callable[[], dict[str, Any]],
                   rng: jax.Array, failed: bool) -> None:
        """The run's last checkpoint. After a thread `failed`, only if the learner state is
        sound (`Learning.state_sound`); else the newest checkpoint stays the last."""
        sound, why = learning.state_sound() if failed else (True, "")
        if sound:
            self.save(learning, counters, rng, final=True)
        else:
            log.error("no final checkpoint: the learner state cannot be saved (%s)", why)

    def _warn_unsaved_frames(self, step: int, frames: int, final: bool) -> None:
        """Say so rather than lose frames quietly at the end of a run."""
        last_step, saved = self.last or (None, 0)
        if final and last_step == step and frames > saved:
            log.warning("no checkpoint at the stop: checkpoint %d already holds update %d, so "
                        "the %s frames collected since (without an update) are in none; a "
                        "resume continues from its %s frames", step, step,
                        f"{frames - saved:,}", f"{saved:,}")

    def _start_replay_snapshot(self, step: int) -> None:
        """The replay snapshot for checkpoint `step`, on a thread. One at a time: every
        checkpoint gets its snapshot, so a save waits here if the previous one is still going.
        Not checked for stalls: a large snapshot takes as long as the disk needs."""
        with self._snapshot_lock:
            self.wait_for_replay_snapshot()
            self._snapshot_watch = self.supervisor.watch("replay-snapshot", busy=None)
            self._snapshot_watch.start(functools.partial(self._write_replay_snapshot, step))

    def _write_replay_snapshot(self, step: int) -> None:
        """A failure ends the run (supervised): a run asked to keep snapshots that cannot
        write them must not go on as if it did; its checkpoints without one still resume."""
        root = self.run_dir.replay_snapshots
        start = time.monotonic()
        self._snapshot_watch.beat()
        save_snapshot(self.buffer, root / str(step), checkpoint_step=step)
        prune_snapshots(root, self.checkpointer.steps_on_disk())
        log.info("replay snapshot %d written in %.1f s", step, time.monotonic() - start)

    def wait_for_replay_snapshot(self) -> None:
        if self._snapshot_watch is not None:
            self._snapshot_watch.join()

    def close(self) -> str:
        """Wait for every save to finish; where the run can resume from."""
        self.wait_for_replay_snapshot()
        self.checkpointer.wait()
        step = self.checkpointer.latest_step()
        self.checkpointer.close()
        if step is None:
            return "no checkpoint was written"
        return f"the newest checkpoint is {step} in {self.run_dir.path} (train --resume)"
