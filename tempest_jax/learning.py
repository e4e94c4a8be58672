"""The learner thread of a run: it owns the train state.

It takes K pre-sampled batches at a time from the prefetcher (held to the replay ratio by the
limiter), runs K updates in one jitted dispatch (`Learner.update_many`), writes the new
priorities back into this process's replay and publishes the parameters to inference every
`learner.publish_interval` updates. The operator's settings pause it and scale its learning
rate. With several processes every dispatch follows an agreement (`coordinator.Lockstep`),
which the run carries out: `coordinate(ready)` returns the decision.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import distributed, schedules
from tempest_jax.actor import Inference, ParamStore
from tempest_jax.config import LearnerConfig, ReplayConfig, ScheduleConfig
from tempest_jax.control import Controls
from tempest_jax.coordinator import Decision, Lockstep
from tempest_jax.learner import Batch, Learner, TrainState
from tempest_jax.replay import Prefetcher, Replay
from tempest_jax.supervisor import Supervisor

# How long the learner waits for a batch before it looks at the settings (and, with several
# processes, joins the next agreement anyway: the idle agreement rate).
BATCH_POLL_S = 0.2
LOCKSTEP_POLL_S = 0.05


class Learning:
    """The train state, its update count and the learner thread's latest metrics. `lock` is
    held while the state changes (a checkpoint takes it to read a consistent state)."""

    def __init__(self, learner: Learner, inference: Inference, params: ParamStore,
                 state: TrainState, updates: int, replay: Replay, controls: Controls,
                 cfg: LearnerConfig, replay_cfg: ReplayConfig, schedule: ScheduleConfig,
                 run_frames: Callable[[], int], supervisor: Supervisor, stop: threading.Event,
                 lockstep: Lockstep | None = None):
        self.learner, self.inference, self.params = learner, inference, params
        self.state, self.updates = state, updates
        self.replay, self.controls, self.cfg = replay, controls, cfg
        self.replay_cfg, self.schedule = replay_cfg, schedule
        self.run_frames, self.stop, self.lockstep = run_frames, stop, lockstep
        self.metrics: dict[str, float] = {}
        self.lock = threading.Lock()
        # A lockstep learner waits on its peers (the agreement's own timeout covers that).
        self.watch = supervisor.watch("learner", busy=None if lockstep else (lambda: True))
        self._supervisor = supervisor

    def start(self, coordinate: Callable[[bool], Decision] | None = None) -> None:
        """Start the thread; with several processes `coordinate(ready)` agrees on each step."""
        self.watch.start(lambda: self._run(coordinate))

    def _run(self, coordinate: Callable[[bool], Decision] | None) -> None:
        # Each process samples its own rows of the global batch from its own replay shard.
        prefetch = Prefetcher(
            self.replay.buffer, self.learner.local_batch_rows,
            beta=lambda: float(schedules.per_beta(self.run_frames(), self.replay_cfg)),
            num_batches=self.cfg.updates_per_dispatch,
            seed=distributed.process_seed(self.cfg.seed + 1), limiter=self.replay.limiter,
            supervisor=self._supervisor)
        with prefetch:
            if coordinate is not None:
                self._run_in_lockstep(prefetch, coordinate)
                return
            while not self.stop.is_set():
                self.watch.beat()
                settings = self.controls.settings
                if not settings.training:
                    self.stop.wait(0.05)
                    continue
                try:
                    batch = prefetch.get(timeout=BATCH_POLL_S)
                except TimeoutError:
                    continue
                bc_weight = float(schedules.bc_weight(self.run_frames(), self.schedule))
                self._dispatch(batch, bc_weight, settings.lr_scale)

    def _run_in_lockstep(self, prefetch: Prefetcher,
                         coordinate: Callable[[bool], Decision]) -> None:
        """Every iteration all processes agree (one small exchange) on whether all of them hold
        a batch, whether any asks to save or stop, and on the run's frame count; the run saves
        or stops as agreed, then all dispatch together."""
        held = None
        while not self.stop.is_set():  # set here only if this process fails
            self.watch.beat()
            if held is None:
                with contextlib.suppress(TimeoutError):
                    held = prefetch.get(timeout=LOCKSTEP_POLL_S)
            decision = coordinate(held is not None and self.controls.settings.training)
            if decision.stop:
                return
            if not decision.update:
                continue
            bc_weight = float(schedules.bc_weight(decision.run_frames, self.schedule))
            with self.lockstep.guard(f"learner dispatch at update {self.updates}"):
                self._dispatch(held, bc_weight, decision.lr_scale)
            held = None

    def _dispatch(self, batch, bc_weight: float, lr_scale: float) -> None:
        """K updates on one prefetched batch; new priorities back into this process's replay."""
        k = self.cfg.updates_per_dispatch
        device_batch = Batch(obs=batch.obs, action=batch.action.astype(np.int32),
                             reward=batch.reward, discount=batch.discount,
                             next_obs=batch.next_obs, is_expert=batch.is_expert,
                             weight=batch.weight)
        with self.lock:
            state, metrics, priorities = self.learner.update_many(self.state, device_batch,
                                                                  bc_weight, lr_scale)
            metrics = jax.device_get(metrics)
            self.state = state
            # Applied updates, as the state's own step counts them (a skipped one is not).
            self.updates += k - int(np.sum(metrics["skipped"]))
            priorities = distributed.local_rows(priorities, axis=1)
        self.replay.buffer.update_priorities(batch.index, priorities)
        means = {name: float(np.mean(values)) for name, values in metrics.items()}
        self.metrics = dict(means, bc_weight=bc_weight)
        if self.updates % self.cfg.publish_interval < k:
            self.params.publish(self.inference.params(state.params))

    def state_sound(self, timeout_s: float = 10.0) -> tuple[bool, str]:
        """Whether the train state can be saved after a failure, and why not: no thread holds
        it mid-update (a stalled learner may), its buffers were not given away to an update that
        failed, and its parameters are finite."""
        if not self.lock.acquire(timeout=timeout_s):
            return False, f"a thread holds it and did not let go in {timeout_s:.0f} s"
        try:
            if any(isinstance(x, jax.Array) and x.is_deleted()
                   for x in jax.tree.leaves(self.state)):
                return False, "it was lost with the update that failed"
            if not all(bool(jnp.all(jnp.isfinite(x)))
                       for x in jax.tree.leaves(self.state.params)):
                return False, "its parameters are not finite"
            return True, ""
        finally:
            self.lock.release()
