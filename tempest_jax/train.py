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
import logging
import queue
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import learner as learner_lib
from tempest_jax import schedules, sim
from tempest_jax.actor import Overrides, ParamStore, ServerPolicy, select_actions
from tempest_jax.checkpoint import Checkpointer
from tempest_jax.config import Config
from tempest_jax.metrics import EpisodeStats, MetricsLog, RunDir, format_row, header_row
from tempest_jax.replay import (
    Emission,
    NStepAccumulator,
    Prefetcher,
    ReplayBuffer,
    ReplayRatioLimiter,
    anneal_beta,
    scaled_reward,
)
from tempest_jax.server import GameServer, PolicyOutput

log = logging.getLogger(__name__)
HEADER_EVERY_ROWS = 30


class Replay:
    """The replay buffer with its single writer path: accumulator emissions → buffer → limiter."""

    def __init__(self, cfg: Config, num_streams: int):
        self.cfg = cfg
        self.buffer = ReplayBuffer.from_config(cfg.replay)
        self.limiter = ReplayRatioLimiter.from_config(
            cfg.replay, slack=4 * cfg.learner.batch_size * cfg.learner.updates_per_dispatch)
        self.accumulator = NStepAccumulator.from_config(cfg.replay, num_streams,
                                                        first_serial=self.buffer.obs_written)
        self.transitions = 0

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
        self.state, self.frame = sim.reset(key, self.num_games, cfg.env.start_level)
        schedule = cfg.schedule
        support = jnp.asarray(learner.support)
        apply = learner.network.apply

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

        self._rollout = jax.jit(rollout, donate_argnums=(1, 2))

    def run(self, params, key, frames: int, overrides: Overrides) -> dict[str, np.ndarray]:
        """`steps` ticks of every game; arrays with leading shape (steps, num_games)."""
        self.state, self.frame, outs = self._rollout(
            params, self.state, self.frame, key, np.float32(frames), overrides.as_arrays())
        return jax.device_get(outs)


class ReplaySink:
    """The server's sink: forms transitions on the server thread (cheap, vectorised) and hands
    them to a writer thread that inserts them in batches. The queue is bounded: when the
    writer falls behind, the server waits (backpressure) and the waits are counted."""

    def __init__(self, replay: Replay, reward_cfg, stats: EpisodeStats, frames_counter):
        self.replay = replay
        self.reward_cfg = reward_cfg
        self.stats = stats
        self.frames_counter = frames_counter
        self.backpressure_waits = 0
        self._queue: queue.Queue[Emission | None] = queue.Queue(maxsize=256)
        self._thread = threading.Thread(target=self._write, name="replay-writer", daemon=True)
        self._thread.start()

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

    def _put(self, emission: Emission) -> None:
        try:
            self._queue.put_nowait(emission)
        except queue.Full:
            self.backpressure_waits += 1
            self._queue.put(emission)

    def _write(self) -> None:
        while True:
            items = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(items) < 64:
                    items.append(self._queue.get_nowait())
            stop = items[-1] is None
            emissions = [e for e in items if e is not None]
            if emissions:
                self.replay.add(Emission.concatenate(emissions))
            if stop:
                return

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join()


class Trainer:
    """One training run; `run()` until the frame budget, a signal or `stop()`."""

    def __init__(self, cfg: Config, run: RunDir, resume: bool = False,
                 install_signal_handlers: bool = True):
        self.cfg = cfg
        self.run_dir = run
        self.learner = learner_lib.make_learner(cfg)
        self.checkpointer = Checkpointer(run.checkpoints, keep=cfg.run.keep_checkpoints)
        self.metrics = MetricsLog(run.metrics_file)
        key = jax.random.key(cfg.learner.seed)
        self.frames = 0
        self.updates = 0
        self.pulse_until = 0
        self.overrides = Overrides()
        if resume and self.checkpointer.latest_step() is not None:
            restored = self.checkpointer.restore(self.learner, cfg)
            self.train_state = restored.train_state
            key = restored.rng if restored.rng is not None else key
            self.frames = int(restored.counters.get("frames", 0))
            self.updates = int(restored.counters.get("updates", 0))
            self.pulse_until = int(restored.counters.get("pulse_until", 0))
            log.info("resumed %s at checkpoint %d: %d frames, %d updates", run.path,
                     restored.step, self.frames, self.updates)
        else:
            key, init_key = jax.random.split(key)
            self.train_state = self.learner.init(init_key)
        self.key = key
        self.params = ParamStore(self.train_state.params)
        self.param_count = learner_lib.param_count(self.train_state.params)
        streams = cfg.env.num_games if cfg.env.source == "sim" else cfg.server.max_clients
        self.replay = Replay(cfg, streams)
        self.episodes = EpisodeStats(streams)
        self.training_enabled = threading.Event()
        self.training_enabled.set()
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._learner_error: BaseException | None = None
        self._learner_metrics: dict[str, float] = {}
        self._signal_handlers = install_signal_handlers
        self.source = None
        self.server: GameServer | None = None

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def counters(self) -> dict[str, Any]:
        return {"frames": self.frames, "updates": self.updates, "pulse_until": self.pulse_until,
                "transitions": self.replay.transitions}

    def save(self) -> int:
        """Checkpoint now (the learner thread pauses between dispatches). Returns the step."""
        with self._state_lock:
            step = self.updates
            if step in self.checkpointer.all_steps():
                return step
            self.key, save_key = jax.random.split(self.key)
            self.checkpointer.save(step, self.learner, self.train_state, self.counters(),
                                   self.cfg, rng=save_key)
        log.info("checkpoint %d started (%d frames)", step, self.frames)
        return step

    def current_overrides(self) -> Overrides:
        return self.overrides._replace(pulse=self.frames < self.pulse_until)

    # -- the learner thread --------------------------------------------------------------------

    def _learn(self) -> None:
        cfg = self.cfg
        k = cfg.learner.updates_per_dispatch
        prefetch = Prefetcher(self.replay.buffer, cfg.learner.batch_size,
                              beta=lambda: anneal_beta(self.frames, cfg.replay),
                              num_batches=k, seed=cfg.learner.seed + 1,
                              limiter=self.replay.limiter)
        sums: dict[str, float] = {}
        try:
            with prefetch:
                while not self._stop.is_set():
                    if not self.training_enabled.is_set():
                        self._stop.wait(0.05)
                        continue
                    try:
                        batch = prefetch.get(timeout=0.2)
                    except TimeoutError:
                        continue
                    device_batch = learner_lib.Batch(
                        obs=batch.obs, action=batch.action.astype(np.int32),
                        reward=batch.reward, discount=batch.discount, next_obs=batch.next_obs,
                        is_expert=batch.is_expert, weight=batch.weight)
                    bc_weight = float(schedules.bc_weight(self.frames, cfg.schedule))
                    with self._state_lock:
                        state, metrics, priorities = self.learner.update_many(
                            self.train_state, device_batch, bc_weight)
                        self.train_state = state
                        priorities = np.asarray(priorities)
                        self.updates += k
                    self.replay.buffer.update_priorities(batch.index, priorities)
                    for name, values in jax.device_get(metrics).items():
                        sums[name] = float(np.mean(values))
                    sums["bc_weight"] = bc_weight
                    self._learner_metrics = dict(sums)
                    if self.updates % cfg.learner.publish_interval < k:
                        self.params.publish(state.params)
        except BaseException as e:  # surfaced by the main loop, which stops the run
            self._learner_error = e
            self._stop.set()

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
        learner_thread = threading.Thread(target=self._learn, name="learner", daemon=True)
        server_thread = None
        try:
            if cfg.env.source == "sim":
                self.key, sim_key = jax.random.split(self.key)
                sim_key = jax.random.fold_in(sim_key, cfg.env.seed)
                self.source = SimSource(cfg, self.learner, sim_key)
            else:
                policy = ServerPolicy(self.learner, self.params, cfg.schedule,
                                      seed=cfg.learner.seed, frames=self.frames)
                sink = ReplaySink(self.replay, cfg.reward, self.episodes, lambda: self.frames)
                self.server = GameServer(cfg.server, policy, sink)
                self.source = policy
                server_thread = threading.Thread(target=self.server.serve_forever,
                                                 name="server", daemon=True)
                server_thread.start()
                log.info("serving game clients on %s:%d", *self.server.address)
            learner_thread.start()
            self._loop(total)
        finally:
            self._stop.set()
            if learner_thread.is_alive():
                learner_thread.join(timeout=60)
            if self.server is not None:
                self.server.stop()
                server_thread.join(timeout=10)
                self.server.sink.close()
            if self._learner_error is None:
                self.save()
            self.checkpointer.wait()
            self.checkpointer.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._learner_error is not None:
            raise RuntimeError("the learner thread failed") from self._learner_error
        self.write_metrics(final=True)
        return 0

    def _loop(self, total: int) -> None:
        cfg = self.cfg
        start = last_log = last_ckpt = time.monotonic()
        self._rate_mark = (start, self.frames, self.updates)
        rows = 0
        while not self._stop.is_set():
            if cfg.env.source == "sim":
                self._step_sim()
            else:
                self.frames = self.source.frames
                self._stop.wait(0.05)
            now = time.monotonic()
            if now - last_log >= cfg.run.log_interval_s:
                record = self.write_metrics()
                if rows % HEADER_EVERY_ROWS == 0:
                    print(header_row(), flush=True)
                print(format_row(record), flush=True)
                rows += 1
                last_log = now
            if now - last_ckpt >= cfg.run.checkpoint_interval_s:
                self.save()
                last_ckpt = now
            if total and self.frames >= total:
                break

    def write_metrics(self, final: bool = False) -> dict:
        now = time.monotonic()
        mark_time, mark_frames, mark_updates = self._rate_mark
        elapsed = max(now - mark_time, 1e-9)
        self._rate_mark = (now, self.frames, self.updates)
        sched = self.cfg.schedule
        overrides = self.current_overrides()
        record = {
            "time": time.time(), "frames": self.frames, "updates": self.updates,
            "fps": (self.frames - mark_frames) / elapsed,
            "updates_per_s": (self.updates - mark_updates) / elapsed,
            "epsilon": float(overrides.epsilon if overrides.epsilon >= 0 else
                             schedules.epsilon(self.frames, sched, pulse_until=(
                                 self.pulse_until))),
            "expert_ratio": float(overrides.expert_ratio if overrides.expert_ratio >= 0 else
                                  schedules.expert_ratio(self.frames, sched)),
            "beta": anneal_beta(self.frames, self.cfg.replay),
            "replay_size": len(self.replay.buffer), "transitions": self.replay.transitions,
            "replay_ratio": self.replay.limiter.ratio(), "params": self.param_count,
            "training": self.training_enabled.is_set(),
        }
        record.update(self._learner_metrics)
        record.update(self.episodes.summary(self.frames))
        if self.server is not None:
            server = self.server.stats.snapshot()
            record.update(clients=server["clients"], inference_ms=server["latency_ms_p50"],
                          latency_ms_p50=server["latency_ms_p50"],
                          latency_ms_p99=server["latency_ms_p99"], drops=server["drops"],
                          backpressure_waits=self.server.sink.backpressure_waits)
        if final:
            # A final record follows the last periodic one at once: its rates would be noise.
            del record["fps"], record["updates_per_s"]
            record["final"] = True
        self.metrics.write(record)
        return record
