"""A training run: a frame source, the replay, the learner thread, checkpoints and metrics.

Sources (interchangeable; both feed the same n-step accumulator and replay):
- `SimSource`: the vectorised simulator and the actor in one jitted rollout of
  `env.rollout_steps` ticks over `env.num_games` games; frames go straight into replay.
- `ServerSource`: the TCP game server for MAME and sim clients, with batched inference and a
  replay writer thread.

The learner thread owns the train state: it takes K pre-sampled batches from the prefetcher
(held to the replay ratio by the limiter), runs K updates in one dispatch, writes the new
priorities back and publishes parameters to inference every `learner.publish_interval` updates.
The main thread runs the source (sim) or waits (server), writes a metrics record and a terminal
row every `run.log_interval_s`, checkpoints every `run.checkpoint_interval_s`, and on Ctrl-C or
SIGTERM saves and exits cleanly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tempest_jax import distributed, schedules, sim
from tempest_jax import features as F
from tempest_jax import learner as learner_lib
from tempest_jax.actor import Overrides, ParamStore, ServerPolicy, select_actions
from tempest_jax.checkpoint import Checkpointer
from tempest_jax.config import Config, ConfigError
from tempest_jax.control import Controls
from tempest_jax.dashboard import Dashboard, start_dashboard
from tempest_jax.metrics import (
    EpisodeStats,
    MetricsLog,
    RunDir,
    detail_row,
    format_row,
    header_row,
    print_lines,
)
from tempest_jax.replay import (
    Emission,
    NStepAccumulator,
    Prefetcher,
    ReplayBuffer,
    ReplayRatioLimiter,
    anneal_beta,
    save_snapshot,
    scaled_reward,
)
from tempest_jax.replay.snapshot import prune_snapshots
from tempest_jax.resume import find_resume_point
from tempest_jax.server import GameServer, PeakWindow, PolicyOutput
from tempest_jax.supervisor import RunFailed, Supervisor, ThreadFailure

log = logging.getLogger(__name__)
HEADER_EVERY_ROWS = 30
# The server's replay writer: batches queued at most (then the server waits), and how long it
# lets batches gather before each insert.
WRITE_QUEUE_BATCHES = 1024
WRITE_GATHER_S = 0.02
# With several processes: how long the learner thread waits for a batch before it joins the
# next agreement anyway (the idle agreement rate).
LOCKSTEP_POLL_S = 0.05
# What each process tells the others at every agreement (integers, then floats).
FACT_READY, FACT_STOP, FACT_SAVE, FACT_FRAMES, FACT_REPLAY, FACT_TRANSITIONS, FACT_CLIENTS = (
    range(7))
FLOAT_LR_SCALE = 0
# Episode figures combined over processes: a mean of the processes that have one, or the max.
MEAN_OVER_PROCESSES = ("reward_100k", "reward_1m", "reward_5m", "episode_reward",
                       "episode_length", "score", "level", "expert_share")
MAX_OVER_PROCESSES = ("score_max", "level_max")


class Replay:
    """The replay buffer with its single writer path: accumulator emissions → buffer → limiter.
    `buffer` continues a restored one; `transitions` counts every transition ever stored."""

    def __init__(self, cfg: Config, num_streams: int, buffer: ReplayBuffer | None = None,
                 transitions: int = 0):
        self.cfg = cfg
        self.buffer = buffer if buffer is not None else ReplayBuffer.from_config(cfg.replay)
        self.limiter = ReplayRatioLimiter.from_config(
            cfg.replay, slack=4 * cfg.learner.batch_size * cfg.learner.updates_per_dispatch,
            size=len(self.buffer))
        self.accumulator = NStepAccumulator.from_config(cfg.replay, num_streams,
                                                        first_serial=self.buffer.obs_written)
        self.transitions = transitions

    def add(self, emission: Emission) -> None:
        stored = self.buffer.add(emission)
        self.transitions += stored
        self.limiter.on_insert(stored, len(self.buffer))


class SimSource:
    """The embedded simulator, acting with the published parameters, in jitted chunks."""

    def __init__(self, cfg: Config, learner: learner_lib.Learner, key: jax.Array):
        self.cfg = cfg
        self.num_games = cfg.env.num_games
        self.steps = cfg.env.rollout_steps
        # Games are split over this process's devices (every device when the count divides
        # them), and the rollout keeps that layout: its inputs look the same on every call,
        # so it compiles once.
        games = (learner.inference_rows
                 if self.num_games % learner.num_local_devices == 0
                 else learner.inference_replicated)
        self._games = games
        self.state, self.frame = jax.device_put(
            sim.reset(key, self.num_games, cfg.env.start_level), games)
        self.start_level = cfg.env.start_level
        schedule = cfg.schedule
        support = jnp.asarray(learner.support)
        apply = learner.inference_network.apply

        def tick(carry, key):
            params, state, frame, frames, overrides = carry
            q = learner_lib.expected_q(apply(params, frame.state), support)
            greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
            joint, is_expert = select_actions(
                key, greedy, sim.expert_actions(frame).astype(jnp.int32),
                frame.expert_zap.astype(jnp.int32), frame.gamestate.astype(jnp.int32), frames,
                overrides, schedule)
            out = {"obs": frame.state.astype(jnp.float16), "action": joint.astype(jnp.uint8),
                   "is_expert": is_expert, "obj": frame.obj_reward, "subj": frame.subj_reward,
                   "done": frame.done != 0,
                   "applied": F.action_applied(frame.gamestate, frame.game_mode),
                   "score": frame.score, "level": frame.level}
            state, frame = sim.step(state, joint)
            return (params, state, frame, frames + joint.shape[0], overrides), out

        def rollout(params, state, frame, key, frames, overrides):
            keys = jax.random.split(key, self.steps)
            (_, state, frame, _, _), outs = jax.lax.scan(
                tick, (params, state, frame, frames, overrides), keys)
            return state, frame, outs

        per_tick = NamedSharding(games.mesh, P(None, *games.spec))
        replicated = learner.inference_replicated
        self._rollout = jax.jit(
            rollout, donate_argnums=(1, 2),
            in_shardings=(replicated, games, games, replicated, replicated, replicated),
            out_shardings=(games, games, per_tick))

    def set_start_level(self, level: int) -> None:
        """The 1-based level every game starts its next new game on."""
        if level != self.start_level:
            game = self.state.game
            self.state = self.state.replace(game=game.replace(start_level=jax.device_put(
                jnp.full_like(game.start_level, level - 1), self._games)))
            self.start_level = level

    def run(self, params, key, frames: int, overrides: Overrides) -> dict[str, np.ndarray]:
        """`steps` ticks of every game; arrays with leading shape (steps, num_games)."""
        self.state, self.frame, outs = self._rollout(
            params, self.state, self.frame, key, np.float32(frames), overrides.as_arrays())
        return jax.device_get(outs)


class ReplaySink:
    """The server's sink: forms transitions on the server thread (cheap, vectorised) and hands
    them to a writer thread that inserts them in batches. The queue is bounded: when the
    writer falls behind, the server waits (backpressure) and the waits are counted."""

    def __init__(self, replay: Replay, reward_cfg, stats: EpisodeStats, frames_counter,
                 supervisor: Supervisor | None = None):
        self.replay = replay
        self.reward_cfg = reward_cfg
        self.stats = stats
        self.frames_counter = frames_counter
        self.backpressure_waits = 0
        self._queue: queue.Queue[Emission | None] = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
        self._queue_peak = PeakWindow()
        self._watch = (supervisor or Supervisor()).watch(
            "replay-writer", busy=lambda: not self._queue.empty())
        self._watch.start(self._write)

    def push(self, client_ids: np.ndarray, batch, output: PolicyOutput) -> None:
        reward = scaled_reward(batch.obj_reward, batch.subj_reward, self.reward_cfg)
        done = batch.done != 0
        emission = self.replay.accumulator.push(
            client_ids, batch.state.astype(np.float16), output.joint, reward, done,
            output.is_expert, F.action_applied(batch.gamestate, batch.game_mode))
        self.stats.grow(int(client_ids.max()) + 1)
        self.stats.add(client_ids, reward, output.is_expert, done, batch.score, batch.level,
                       self.frames_counter())
        self._put(emission)

    def disconnect(self, client_id: int) -> None:
        self.stats.reset(np.asarray([client_id]))
        self._put(self.replay.accumulator.truncate([client_id]))

    def _put(self, emission: Emission | None) -> None:
        if self._queue.full():
            self.backpressure_waits += 1
        while True:
            if not self._watch.alive():
                raise RuntimeError("the replay writer thread has ended; frames can no longer "
                                   "be stored")
            with contextlib.suppress(queue.Full):
                self._queue.put(emission, timeout=0.1)
                break
        self._queue_peak.observe(self._queue.qsize())

    def queue_depths(self) -> tuple[int, int]:
        """(batches waiting for the writer now, at most since the previous call)."""
        depth = self._queue.qsize()
        return depth, self._queue_peak.take(depth)

    def _write(self) -> None:
        while True:
            items = [self._queue.get()]
            self._watch.beat()
            if items[0] is not None:
                # Gather a few milliseconds of batches into one insert: per-insert overhead,
                # paid under the GIL the server thread needs, dominates small batches.
                time.sleep(WRITE_GATHER_S)
            with contextlib.suppress(queue.Empty):
                while items[-1] is not None and len(items) < WRITE_QUEUE_BATCHES:
                    items.append(self._queue.get_nowait())
            stop = items[-1] is None
            emissions = [e for e in items if e is not None]
            if emissions:
                self.replay.add(Emission.concatenate(emissions))
            if stop:
                return

    def close(self) -> None:
        """Write everything queued, then stop the writer (at once if it has failed)."""
        if self._watch.alive():
            with contextlib.suppress(RuntimeError):  # it ended meanwhile
                self._put(None)
            self._watch.join()


class Trainer:
    """One training run; `run()` until the frame budget, a signal or `stop()`."""

    def __init__(self, cfg: Config, run: RunDir, resume: bool = False,
                 install_signal_handlers: bool = True):
        self.cfg = cfg
        self.run_dir = run
        self.learner = learner_lib.make_learner(cfg)
        self.lockstep = jax.process_count() > 1
        if self.lockstep and cfg.replay.snapshot:
            raise ConfigError("replay.snapshot is not supported with distributed training yet: "
                              "every process has its own replay shard")
        if cfg.learner.batch_size % self.learner.num_devices:
            raise ConfigError(f"learner.batch_size ({cfg.learner.batch_size}) must be a "
                              f"multiple of the {self.learner.num_devices} devices the learner "
                              f"splits it over ({jax.process_count()} processes)")
        self.checkpointer = Checkpointer(run.checkpoints, keep=cfg.run.keep_checkpoints)
        # Process 0 writes the run's metrics; the others keep their latest record in memory.
        self.metrics = MetricsLog(run.metrics_file if distributed.is_primary() else None)
        key = jax.random.key(cfg.learner.seed)
        # `frames` counts the run's frames: this process's plus the others' as of the last
        # agreement (always 0 with one process).
        self.local_frames = 0
        self.peer_frames = 0
        # (step, run-wide frames) of the newest checkpoint, as far as this process knows.
        self._last_checkpoint: tuple[int, int] | None = None
        self.agreement = distributed.Agreement(cfg.distributed.collective_timeout_s)
        self.watchdog = (distributed.Watchdog(cfg.distributed.collective_timeout_s)
                         if self.lockstep else None)
        self._agreed: tuple[np.ndarray, np.ndarray] | None = None
        self._agreed_peer_frames = 0
        self._episode_summary: dict[str, float] = {}
        self._stop_requested = threading.Event()
        self._save_requested = threading.Event()
        self.frames = 0
        self.updates = 0
        self.pulse_until = 0
        self.overrides = Overrides()
        snapshots = run.replay_snapshots if cfg.replay.snapshot else None
        found = find_resume_point(self.checkpointer, self.learner, cfg, snapshots,
                                  repair=distributed.is_primary()) if resume else None
        restored_replay, transitions = None, 0
        if found is not None:
            restored = found.restored
            restored_replay = found.replay
            transitions = int(restored.counters.get("transitions", 0))
            self.train_state = restored.train_state
            key = restored.rng if restored.rng is not None else key
            self.frames = int(restored.counters.get("frames", 0))
            self.updates = int(restored.counters.get("updates", 0))
            self.pulse_until = int(restored.counters.get("pulse_until", 0))
            self._last_checkpoint = (restored.step, self.frames)
            log.info("resumed %s at checkpoint %d: %d frames, %d updates, %s", run.path,
                     restored.step, self.frames, self.updates,
                     "empty replay" if restored_replay is None else
                     f"{len(restored_replay)} transitions in replay")
        else:
            if resume:
                log.warning("nothing to resume in %s; starting from scratch", run.path)
            key, init_key = jax.random.split(key)
            self.train_state = self.learner.init(init_key)
        if self.lockstep:
            # Same learner state everywhere; the run's frames and transitions (run-wide sums)
            # split over processes, whose counts add up again at every agreement; each process
            # acts and samples with its own key.
            saved = self.local_frames
            share = functools.partial(distributed.process_share, index=jax.process_index(),
                                      count=jax.process_count())
            self.local_frames = share(saved)
            self.peer_frames = self._agreed_peer_frames = saved - self.local_frames
            transitions = share(transitions)
            if jax.process_index() > 0:
                key = jax.random.fold_in(key, jax.process_index())
        self.key = key
        self.params = ParamStore(self.learner.inference_params(self.train_state.params))
        self.param_count = learner_lib.param_count(self.train_state.params)
        streams = cfg.env.num_games if cfg.env.source == "sim" else cfg.server.max_clients
        self.replay = Replay(cfg, streams, restored_replay, transitions)
        self._snapshot_lock = threading.Lock()
        self._snapshot_watch = None
        self.episodes = EpisodeStats(streams)
        self.training_enabled = threading.Event()
        self.training_enabled.set()
        self._stop = threading.Event()
        # Every long-lived thread runs under it: the first failure or stall stops the run.
        self.supervisor = Supervisor(cfg.run.stall_timeout_s,
                                     on_failure=lambda failure: self._stop.set())
        self._state_lock = threading.Lock()
        self._learner_metrics: dict[str, float] = {}
        self._signal_handlers = install_signal_handlers
        self.source = None
        self.server: GameServer | None = None
        self.controls = Controls(self)
        self.dashboard: Dashboard | None = None

    # -- control ------------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        return self.local_frames + self.peer_frames

    @frames.setter
    def frames(self, value: int) -> None:
        self.local_frames = value - self.peer_frames

    def stop(self) -> None:
        """End the run (with several processes: all of them, at the next agreement)."""
        if self.lockstep:
            self._stop_requested.set()
        else:
            self._stop.set()

    def counters(self) -> dict[str, Any]:
        transitions = self.replay.transitions
        if self._agreed is not None:
            transitions = int(self._agreed[0][:, FACT_TRANSITIONS].sum())
        return {"frames": self.frames, "updates": self.updates, "pulse_until": self.pulse_until,
                "transitions": transitions}

    def save(self, final: bool = False) -> int | None:
        """Checkpoint now (the learner thread pauses between dispatches). Returns the step;
        with several processes, None: every process saves at the next agreement. `final`: the
        run stops after it."""
        if self.lockstep:
            self._save_requested.set()
            return None
        return self._save_now(final)

    def _save_now(self, final: bool = False) -> int:
        with self._state_lock:
            step = self.updates
            if step in self.checkpointer.all_steps():
                # Steps are update counts: with no update since, there is nothing new to save
                # the frames under. Say so rather than lose them quietly at the end of a run.
                last_step, saved = self._last_checkpoint or (None, 0)
                if final and last_step == step and self.frames > saved:
                    log.warning("no checkpoint at the stop: checkpoint %d already holds update "
                                "%d, so the %s frames collected since (without an update) are "
                                "in none; a resume continues from its %s frames", step, step,
                                f"{self.frames - saved:,}", f"{saved:,}")
                return step
            counters = self.counters()
            # The key itself, not a split of it: a resumed run continues the same key stream.
            self.checkpointer.save(step, self.learner, self.train_state, counters, self.cfg,
                                   rng=self.key)
            self._last_checkpoint = (step, counters["frames"])
        log.info("checkpoint %d started (%d frames)", step, self.frames)
        if self.cfg.replay.snapshot:
            self._start_replay_snapshot(step)
        return step

    def _start_replay_snapshot(self, step: int) -> None:
        """Write the replay snapshot for checkpoint `step` on a thread. One at a time: every
        checkpoint gets its snapshot, so a save waits here if the previous one is still going."""
        with self._snapshot_lock:
            self.wait_for_replay_snapshot()
            # Not checked for stalls: a large snapshot takes as long as the disk needs.
            self._snapshot_watch = self.supervisor.watch("replay-snapshot", busy=None)
            self._snapshot_watch.start(functools.partial(self._write_replay_snapshot, step))

    def _write_replay_snapshot(self, step: int) -> None:
        """A failure ends the run (supervised): a run asked to keep snapshots that cannot
        write them must not go on as if it did; its checkpoints without one still resume."""
        root = self.run_dir.replay_snapshots
        start = time.monotonic()
        self._snapshot_watch.beat()
        save_snapshot(self.replay.buffer, root / str(step), checkpoint_step=step)
        prune_snapshots(root, self.checkpointer.steps_on_disk())
        log.info("replay snapshot %d written in %.1f s", step, time.monotonic() - start)

    def wait_for_replay_snapshot(self) -> None:
        if self._snapshot_watch is not None:
            self._snapshot_watch.join()

    def current_overrides(self) -> Overrides:
        return self.overrides._replace(pulse=self.frames < self.pulse_until)

    # -- the learner thread --------------------------------------------------------------------

    def _learn(self) -> None:
        cfg = self.cfg
        k = cfg.learner.updates_per_dispatch
        # Each process samples its own rows of the global batch from its own replay shard.
        prefetch = Prefetcher(self.replay.buffer, self.learner.local_batch_rows,
                              beta=lambda: anneal_beta(self.frames, cfg.replay),
                              num_batches=k, seed=distributed.process_seed(cfg.learner.seed + 1),
                              limiter=self.replay.limiter, supervisor=self.supervisor)
        with prefetch:
            if self.lockstep:
                self._learn_in_lockstep(prefetch)
            while not self._stop.is_set():
                self._learner_watch.beat()
                if not self.training_enabled.is_set():
                    self._stop.wait(0.05)
                    continue
                try:
                    batch = prefetch.get(timeout=0.2)
                except TimeoutError:
                    continue
                self._dispatch(batch, float(schedules.bc_weight(self.frames, cfg.schedule)),
                               self.controls.lr_scale)

    def _dispatch(self, batch, bc_weight: float, lr_scale: float) -> None:
        """K updates on one prefetched batch; new priorities back into this process's replay."""
        k = self.cfg.learner.updates_per_dispatch
        device_batch = learner_lib.Batch(
            obs=batch.obs, action=batch.action.astype(np.int32), reward=batch.reward,
            discount=batch.discount, next_obs=batch.next_obs, is_expert=batch.is_expert,
            weight=batch.weight)
        with self._state_lock:
            state, metrics, priorities = self.learner.update_many(
                self.train_state, device_batch, bc_weight, lr_scale)
            self.train_state = state
            priorities = distributed.local_rows(priorities, axis=1)
            self.updates += k
        self.replay.buffer.update_priorities(batch.index, priorities)
        sums = {name: float(np.mean(values))
                for name, values in jax.device_get(metrics).items()}
        self._learner_metrics = dict(sums, bc_weight=bc_weight)
        if self.updates % self.cfg.learner.publish_interval < k:
            self.params.publish(self.learner.inference_params(state.params))

    def _combine_processes(self, table: np.ndarray, values: np.ndarray) -> dict[str, Any]:
        """The run-wide figures from the last agreement: sums of the processes' counts,
        episode figures averaged (or maxed) over the processes that have them."""
        combined = {"processes": int(table.shape[0]),
                    "replay_size": int(table[:, FACT_REPLAY].sum()),
                    "transitions": int(table[:, FACT_TRANSITIONS].sum()),
                    "frames_by_process": [int(f) for f in table[:, FACT_FRAMES]]}
        if self.server is not None:
            combined["clients"] = int(table[:, FACT_CLIENTS].sum())
        episodes = values[:, 1:]
        for column, name in enumerate(MEAN_OVER_PROCESSES + MAX_OVER_PROCESSES):
            present = episodes[:, column][~np.isnan(episodes[:, column])]
            if len(present):
                combined[name] = float(present.mean() if name in MEAN_OVER_PROCESSES
                                       else present.max())
        return combined

    def _learn_in_lockstep(self, prefetch: Prefetcher) -> None:
        """The learner loop with several processes. Every iteration all processes agree
        (one small collective) on whether all of them hold a batch, whether any asks to save
        or stop, and on the run's frame count; then all dispatch, save or stop together, so
        every process issues the same collectives in the same order. A process without a batch
        yet (replay below min_size, training paused) holds the others back. Stopping saves a
        final checkpoint on every process first."""
        cfg = self.cfg
        held = None
        while not self._stop.is_set():  # set here only if this process fails
            self._learner_watch.beat()
            if held is None:
                with contextlib.suppress(TimeoutError):
                    held = prefetch.get(timeout=LOCKSTEP_POLL_S)
            asks_save = self._save_requested.is_set()
            ints = [0] * 7
            ints[FACT_READY] = int(held is not None and self.training_enabled.is_set())
            ints[FACT_STOP] = int(self._stop_requested.is_set())
            ints[FACT_SAVE] = int(asks_save)
            ints[FACT_FRAMES] = self.local_frames
            ints[FACT_REPLAY] = len(self.replay.buffer)
            ints[FACT_TRANSITIONS] = self.replay.transitions
            ints[FACT_CLIENTS] = (self.server.stats.clients_connected
                                  if self.server is not None else 0)
            summary = self._episode_summary  # as of this process's last metrics record
            floats = [self.controls.lr_scale] + [
                float(summary.get(name, np.nan))
                for name in MEAN_OVER_PROCESSES + MAX_OVER_PROCESSES]
            table, values = self.agreement.gather(ints, floats)
            self._agreed = (table, values)
            # The main thread applies it (it alone writes the frame counters).
            self._agreed_peer_frames = int(table[:, FACT_FRAMES].sum()) - ints[FACT_FRAMES]
            stop = bool(table[:, FACT_STOP].any())
            if stop or table[:, FACT_SAVE].any():
                if asks_save:
                    self._save_requested.clear()
                with self.watchdog.guard(f"saving checkpoint {self.updates}"):
                    self._save_now(final=stop)
            if stop:
                log.info("process %d stops at update %d; parameters digest %s",
                         jax.process_index(), self.updates,
                         distributed.digest(self.train_state.params))
                self._stop.set()
                return
            if not table[:, FACT_READY].all():
                continue
            bc_weight = float(schedules.bc_weight(int(table[:, FACT_FRAMES].sum()),
                                                  cfg.schedule))
            with self.watchdog.guard(f"learner dispatch at update {self.updates}"):
                # Process 0's learning-rate scale (its dashboard's) applies to everyone.
                self._dispatch(held, bc_weight, float(values[0, FLOAT_LR_SCALE]))
            held = None

    # -- sources -------------------------------------------------------------------------------

    def _step_sim(self) -> None:
        source: SimSource = self.source
        self.key, key = jax.random.split(self.key)
        params, _ = self.params.get()
        out = source.run(params, key, self.frames, self.current_overrides())
        streams = np.arange(source.num_games)
        reward = scaled_reward(out["obj"], out["subj"], self.cfg.reward)
        emissions = []
        for t in range(source.steps):
            emissions.append(self.replay.accumulator.push(
                streams, out["obs"][t], out["action"][t], reward[t], out["done"][t],
                out["is_expert"][t], out["applied"][t]))
            self.frames += source.num_games
            self.episodes.add(streams, reward[t], out["is_expert"][t], out["done"][t],
                              out["score"][t], out["level"][t], self.frames)
        self.replay.add(Emission.concatenate(emissions))
        self._hold_replay_ratio()

    def _hold_replay_ratio(self) -> None:
        """The simulator can outrun the learner; wait while the learner's sample budget is
        well ahead of what it has drawn, so samples per transition stay near the target."""
        limiter = self.replay.limiter
        if limiter.replay_ratio == 0 or not self.training_enabled.is_set():
            return
        while not self._stop.is_set() and limiter.allowed() > 2 * limiter.slack:
            self._stop.wait(0.002)

    # -- the run -------------------------------------------------------------------------------

    def run(self, frames: int | None = None) -> int:
        """Train until `frames` more frames (default: `run.total_frames` in all; 0 = no limit),
        a signal or `stop()`."""
        cfg = self.cfg
        total = self.frames + frames if frames else cfg.run.total_frames
        previous = {}
        if self._signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        self._learner_watch = self.supervisor.watch(
            "learner", busy=None if self.lockstep else (lambda: True))
        server_watch = None
        self.supervisor.start_monitor()
        try:
            if cfg.env.source == "sim":
                self.key, sim_key = jax.random.split(self.key)
                sim_key = jax.random.fold_in(sim_key, cfg.env.seed)
                self.source = SimSource(cfg, self.learner, sim_key)
            else:
                # Its own key stream per process; schedules follow this process's frames.
                policy = ServerPolicy(self.learner, self.params, cfg.schedule,
                                      seed=cfg.learner.seed + (jax.process_index() << 16),
                                      frames=self.local_frames,
                                      overrides=self.current_overrides)
                # Before any client connects, so no client's first reply waits for XLA.
                started = time.monotonic()
                sizes = policy.compile_batches(min(cfg.server.max_clients, cfg.server.max_batch))
                log.info("inference compiled for batch sizes %s in %.1f s",
                         ", ".join(map(str, sizes)), time.monotonic() - started)
                sink = ReplaySink(self.replay, cfg.reward, self.episodes, lambda: self.frames,
                                  supervisor=self.supervisor)
                self.server = GameServer(cfg.server, policy, sink)
                self.source = policy
                log.info("serving game clients on %s:%d", *self.server.address)
                server_watch = self.supervisor.watch("server")
                server_watch.start(functools.partial(self.server.serve_forever,
                                                     heartbeat=server_watch.beat))
            if cfg.dashboard.enabled and distributed.is_primary():
                self.dashboard = start_dashboard(cfg.dashboard, self.controls, self.supervisor)
            log.info("network: %s parameters; the actors multiply in %s", f"{self.param_count:,}",
                     self.learner.inference_dtype_name)
            self._learner_watch.start(self._learn)
            self._loop(total)
        except Exception as e:  # the main thread's failure ends the run like any other's
            self.supervisor.fail(ThreadFailure(threading.current_thread().name,
                                               f"{type(e).__name__}: {e}", e))
        finally:
            self._stop.set()
            self._learner_watch.join(timeout=60)
            if self.server is not None:
                self.server.stop()
                server_watch.join(timeout=10)
                self.server.sink.close()
                # Frames served since the loop's last look count in the final checkpoint.
                self.local_frames = self.source.frames
            failure = self.supervisor.failure
            if not self.lockstep and (failure is None or self._learner_state_sound()):
                self.save(final=True)  # lockstep saved at its agreed stop
            self.wait_for_replay_snapshot()
            self.checkpointer.wait()
            resume_note = self._checkpoint_note()
            self.checkpointer.close()
            self.supervisor.close()
            if self.dashboard is not None:
                self.dashboard.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failure is not None:
            raise RunFailed(failure, resume_note)
        self.write_metrics(final=True)
        return 0

    def _learner_state_sound(self, timeout_s: float = 10.0) -> bool:
        """Whether the train state can be saved after a failure: no thread holds it mid-update
        (a stalled learner may), its buffers were not given away to an update that failed, and
        its parameters are finite."""
        if not self._state_lock.acquire(timeout=timeout_s):
            log.error("the learner state is held by a thread that did not let go in %.0f s; "
                      "no final checkpoint", timeout_s)
            return False
        try:
            leaves = jax.tree.leaves(self.train_state)
            if any(isinstance(x, jax.Array) and x.is_deleted() for x in leaves):
                log.error("the learner state was lost with the failed update; no final "
                          "checkpoint")
                return False
            if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(
                    self.train_state.params)):
                log.error("the parameters are not finite; no final checkpoint")
                return False
            return True
        finally:
            self._state_lock.release()

    def _checkpoint_note(self) -> str:
        """Where the run can resume from, for the failure message."""
        step = self.checkpointer.latest_step()
        if step is None:
            return "no checkpoint was written"
        return f"the newest checkpoint is {step} in {self.run_dir.path} (train --resume)"

    def _loop(self, total: int) -> None:
        cfg = self.cfg
        start = last_log = last_ckpt = time.monotonic()
        self._rate_mark = (start, self.frames, self.updates)
        rows = 0
        while not self._stop.is_set():
            self.peer_frames = self._agreed_peer_frames
            self.controls.apply_to_source()
            if self._stop_requested.is_set():
                self._stop.wait(0.05)  # every process stops at the next agreement
            elif cfg.env.source == "sim":
                self._step_sim()
            else:
                self.local_frames = self.source.frames
                self._stop.wait(0.05)
            now = time.monotonic()
            if now - last_log >= cfg.run.log_interval_s and not distributed.is_primary():
                record = self.write_metrics()
                log.info("process %d: %d frames here, %d in the run, %d updates, replay %d",
                         jax.process_index(), self.local_frames, self.frames, self.updates,
                         len(self.replay.buffer))
                last_log = now
            elif now - last_log >= cfg.run.log_interval_s:
                record = self.write_metrics()
                lines = [header_row()] if rows % HEADER_EVERY_ROWS == 0 else []
                lines.append(format_row(record))
                if self.controls.verbose:
                    lines.append(detail_row(record))
                print_lines(lines)
                rows += 1
                last_log = now
            if (self.controls.save_requested.is_set()
                    or now - last_ckpt >= cfg.run.checkpoint_interval_s):
                self.controls.save_requested.clear()
                self.save()
                last_ckpt = now
            if total and self.frames >= total:
                if not self.lockstep:
                    break
                self.stop()

    def write_metrics(self, final: bool = False) -> dict:
        now = time.monotonic()
        mark_time, mark_frames, mark_updates = self._rate_mark
        elapsed = max(now - mark_time, 1e-9)
        self._rate_mark = (now, self.frames, self.updates)
        record = {
            "time": time.time(), "frames": self.frames, "updates": self.updates,
            "fps": (self.frames - mark_frames) / elapsed,
            "updates_per_s": (self.updates - mark_updates) / elapsed,
            "epsilon": self.controls.effective_epsilon(),
            "expert_ratio": self.controls.effective_expert_ratio(),
            "beta": anneal_beta(self.frames, self.cfg.replay),
            "replay_size": len(self.replay.buffer), "transitions": self.replay.transitions,
            "replay_ratio": self.replay.limiter.ratio(), "params": self.param_count,
            **self.controls.state(),
        }
        record.update(self._learner_metrics)
        record.update(self.episodes.summary(self.frames))
        self._episode_summary = record
        if self.server is not None:
            server = self.server.stats.snapshot()
            write_queue, write_queue_peak = self.server.sink.queue_depths()
            record.update(clients=server["clients"], inference_ms=server["latency_ms_p50"],
                          latency_ms_p50=server["latency_ms_p50"],
                          latency_ms_p99=server["latency_ms_p99"], drops=server["drops"],
                          backpressure_waits=self.server.sink.backpressure_waits,
                          queued_frames=server["queued_frames"],
                          queued_frames_peak=server["queued_frames_peak"],
                          write_queue=write_queue, write_queue_peak=write_queue_peak)
        if self._agreed is not None:
            record.update(self._combine_processes(*self._agreed))
        if final:
            # A final record follows the last periodic one at once: its rates would be noise.
            del record["fps"], record["updates_per_s"]
            record["final"] = True
        self.metrics.write(record)
        if self.dashboard is not None:
            self.dashboard.add(record)
        return record
