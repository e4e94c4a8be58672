"""Frame sources of a training run, behind one interface: the embedded simulator and the game
server (MAME or simulated clients over TCP).

A source plays games with the actors' current parameters, forms transitions into the replay and
counts its frames; the run only calls it:

- `collect()`: one step of work (the simulator: a jitted rollout chunk; the server, which runs
  on its own thread: a short wait);
- `frames`: this process's frames so far (continuing the run's count on a resume);
- `apply(settings)`: the operator settings that belong to the games (the start level);
- `metrics()`: the source's own figures for the metrics record;
- `games()`: the games one may watch (simulator games, or connected clients); the source copies
  the latest frame of each watched one into the run's `FrameWatch` (`gameview`);
- `close()`: stop, with every frame received stored.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.actor import (
    ACTION_DRAWS,
    Inference,
    ParamStore,
    Segments,
    ServerPolicy,
    advance_segments,
    greedy,
    select_actions,
)
from tempest_jax.config import Config, EnvConfig, RewardConfig, ScheduleConfig, ServerConfig
from tempest_jax.control import Controls, OperatorSettings
from tempest_jax.gameview import FrameWatch, served_frame, sim_frame
from tempest_jax.metrics import EpisodeStats
from tempest_jax.policy import PolicyOutput
from tempest_jax.protocol import FrameBatch
from tempest_jax.replay import Emission, Replay, ReplaySink, scaled_reward
from tempest_jax.server import GameServer
from tempest_jax.sim import cabinet as C
from tempest_jax.sim.compiling import jit as sim_jit
from tempest_jax.supervisor import Supervisor

log = logging.getLogger(__name__)
# The server source's main-loop step: how long `collect` waits (the server works meanwhile).
SERVER_POLL_S = 0.05


class FrameSource(Protocol):
    frames: int

    def collect(self) -> None: ...

    def apply(self, settings: OperatorSettings) -> None: ...

    def metrics(self) -> dict: ...

    def games(self) -> Sequence[int]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class RunLinks:
    """What a source shares with the run: the actors' network and the parameters published to
    it, the replay and episode statistics it writes, the operator's settings, the run's frame
    count (the schedules' clock), the run's supervisor and its stop event, and the games
    watched on the dashboard."""

    inference: Inference
    params: ParamStore
    replay: Replay
    episodes: EpisodeStats
    controls: Controls
    run_frames: Callable[[], int]
    supervisor: Supervisor
    stop: threading.Event
    watch: FrameWatch


def make_source(cfg: Config, links: RunLinks, keys: KeyStream, frames: int) -> FrameSource:
    """The source `env.source` names; `frames`: this process's frames so far."""
    if cfg.env.source == "sim":
        return SimSource(cfg.env, cfg.schedule, cfg.reward, links, keys, frames)
    # Schedules follow this process's frames; its key comes from the run's (per-process) key
    # stream, like the simulator's, never the parameters' initialisation key.
    return ServerSource(cfg.server, cfg.schedule, cfg.reward, links, keys.next(), frames=frames)


class KeyStream:
    """The run's PRNG key, split for each use; `key` is what a checkpoint saves."""

    def __init__(self, key: jax.Array):
        self.key = key

    def next(self) -> jax.Array:
        self.key, key = jax.random.split(self.key)
        return key


class SimSource:
    """The embedded simulator and the actor in one jitted rollout of `env.rollout_steps` ticks
    over `env.num_games` games; frames go straight into replay, no sockets. The simulator can
    outrun the learner, so after each chunk it waits while the learner's sample budget
    (`replay.replay_ratio`) is well ahead of what it has drawn.

    With `env.cabinet` the games are whole cabinets, played by the client's game control
    (`sim.cabinet`) with the operator's start settings, as MAME clients are; `state` is then
    (the simulator state, the control state)."""

    def __init__(self, env: EnvConfig, schedule: ScheduleConfig, reward: RewardConfig,
                 links: RunLinks, keys: KeyStream, frames: int = 0):
        self.num_games, self.steps = env.num_games, env.rollout_steps
        self.start_level_span = env.start_level_span
        self.reward, self.links, self.keys = reward, links, keys
        self.frames = frames
        inference = links.inference
        # Games are split over this process's devices (every device when the count divides
        # them), and the rollout keeps that layout: its inputs look the same on every call,
        # so it compiles once.
        self._games = (inference.rows if self.num_games % inference.num_devices == 0
                       else inference.replicated)
        key = jax.random.fold_in(keys.next(), env.seed)
        self.cabinet = env.cabinet
        if self.cabinet:
            sim_state, frame = sim.cabinet_reset(key, self.num_games)
            control = C.update_settings(C.initial_control(self.num_games), False,
                                        env.start_level)
            self.state, self.frame = jax.device_put(((sim_state, control), frame), self._games)
        else:
            self.state, self.frame = jax.device_put(
                sim.reset(key, self.num_games, self._start_levels(env.start_level)),
                self._games)
        self.start_advanced = False
        self.segments = jax.device_put(Segments(jnp.zeros(self.num_games, jnp.float32),
                                                jnp.zeros(self.num_games, jnp.int32)),
                                       self._games)
        self.start_level = env.start_level
        self._rollout = _make_rollout(inference, schedule, self.steps, self._games,
                                      self.cabinet)
        self._pick = jax.jit(lambda frame, game: jax.tree.map(lambda x: x[game], frame))

    def collect(self) -> None:
        links = self.links
        params, _ = links.params.get()
        # The watched games' frames, copied before the rollout takes (donates) them; the first
        # tick acts on them.
        watched = [(game, jax.device_get(self._pick(self.frame, np.int32(game))))
                   for game in links.watch.watched()]
        self.state, self.frame, self.segments, outs = self._rollout(
            params, self.state, self.frame, self.segments, self.keys.next(),
            np.float32(links.run_frames()), links.controls.overrides().as_arrays())
        out = jax.device_get(outs)
        for game, frame in watched:
            links.watch.put(sim_frame(game, frame, out["action"][0, game],
                                      out["is_expert"][0, game]))
        streams = np.arange(self.num_games)
        reward = scaled_reward(out["obj"], out["subj"], self.reward)
        emissions = []
        for t in range(self.steps):
            emissions.append(links.replay.accumulator.push(
                streams, out["obs"][t], out["action"][t], reward[t], out["done"][t],
                out["is_expert"][t], out["applied"][t]))
            self.frames += self.num_games
            links.episodes.add(streams, reward[t], out["is_expert"][t], out["done"][t],
                               out["score"][t], out["level"][t], links.run_frames())
        links.replay.add(Emission.concatenate(emissions))
        self._hold_replay_ratio()

    def _hold_replay_ratio(self) -> None:
        limiter, stop = self.links.replay.limiter, self.links.stop
        if limiter.replay_ratio == 0 or not self.links.controls.settings.training:
            return
        while not stop.is_set() and limiter.allowed() > 2 * limiter.slack:
            stop.wait(0.002)

    def apply(self, settings: OperatorSettings) -> None:
        """A new start level reaches every game at its next new game (cabinets: the client's
        game control takes it, and start_advanced, at the next level select)."""
        if self.cabinet:
            if (settings.start_level, settings.start_advanced) != (self.start_level,
                                                                   self.start_advanced):
                sim_state, control = self.state
                control = jax.device_put(C.update_settings(
                    control, settings.start_advanced, settings.start_level), self._games)
                self.state = (sim_state, control)
                self.start_level, self.start_advanced = (settings.start_level,
                                                         settings.start_advanced)
            return
        if settings.start_level != self.start_level:
            game = self.state.game
            levels = self._start_levels(settings.start_level) - 1
            self.state = self.state.replace(game=game.replace(start_level=jax.device_put(
                jnp.asarray(levels, game.start_level.dtype), self._games)))
            self.start_level = settings.start_level

    def _start_levels(self, first: int) -> np.ndarray:
        """Each game's 1-based start level: `first` .. first + span - 1 spread over the games
        (env.start_level_span), never past level 99."""
        return np.minimum(first + np.arange(self.num_games) % self.start_level_span, 99)

    def metrics(self) -> dict:
        return {}

    def games(self) -> range:
        return range(self.num_games)

    def close(self) -> None:
        """Nothing runs between chunks."""


def _make_rollout(inference: Inference, schedule: ScheduleConfig, steps: int,
                  games: NamedSharding, cabinet: bool = False):
    """rollout(params, state, frame, segments, key, frames, overrides) -> (state, frame,
    segments, per-tick outputs with leading shape (steps, num_games)), jitted with the games'
    layout. `cabinet`: the state is (simulator state, control state) of cabinets."""
    spinner_levels = jnp.asarray(F.SPINNER_LEVELS_ARRAY, jnp.int32)

    def tick(carry, key):
        params, state, frame, segments, frames, overrides = carry
        uniforms = jax.random.uniform(key, (1 + ACTION_DRAWS, *segments.draw.shape))
        segments, draw = advance_segments(segments, uniforms[0], frame.done != 0,
                                          schedule.expert_segment_frames)
        joint, is_expert = select_actions(
            uniforms[1:], greedy(inference.network.apply, params, frame.state, inference.support),
            sim.expert_actions(frame).astype(jnp.int32), frame.expert_zap.astype(jnp.int32),
            frame.gamestate.astype(jnp.int32), frames, overrides, schedule, draw)
        out = {"obs": frame.state.astype(jnp.float16), "action": joint.astype(jnp.uint8),
               "is_expert": is_expert, "obj": frame.obj_reward, "subj": frame.subj_reward,
               "done": frame.done != 0,
               "applied": F.action_applied(frame.gamestate, frame.game_mode, frame.state),
               "score": frame.score, "level": frame.level}
        if cabinet:
            fire, zap, sp = F.decode_joint(joint)
            sim_state, control = state
            sim_state, frame, control, _, _ = C.client_tick(
                sim_state, control, fire, zap, spinner_levels[sp], control.start_advanced,
                control.start_level_min)
            state = (sim_state, control)
        else:
            state, frame = sim.step(state, joint)
        return (params, state, frame, segments, frames + joint.shape[0], overrides), out

    def rollout(params, state, frame, segments, key, frames, overrides):
        (_, state, frame, segments, _, _), outs = jax.lax.scan(
            tick, (params, state, frame, segments, frames, overrides),
            jax.random.split(key, steps))
        return state, frame, segments, outs

    per_tick = NamedSharding(games.mesh, P(None, *games.spec))
    replicated = inference.replicated
    return sim_jit(rollout, donate_argnums=(1, 2, 3),
                   in_shardings=(replicated, games, games, games, replicated, replicated,
                                 replicated),
                   out_shardings=(games, games, games, per_tick))


class ServerSource:
    """The game server, for MAME and simulated clients over TCP, on its own supervised thread:
    batched inference (`ServerPolicy`, compiled for every padded batch size before the server
    listens, so no client's first reply waits for XLA) and the replay sink on the server thread."""

    def __init__(self, cfg: ServerConfig, schedule: ScheduleConfig, reward: RewardConfig,
                 links: RunLinks, key: jax.Array, frames: int = 0):
        self.stop = links.stop
        self.policy = ServerPolicy(links.inference, links.params, schedule, key=key,
                                   max_clients=cfg.max_clients, frames=frames,
                                   overrides=links.controls.overrides)
        started = time.monotonic()
        sizes = self.policy.compile_batches(min(cfg.max_clients, cfg.max_batch))
        log.info("inference compiled for batch sizes %s in %.1f s", ", ".join(map(str, sizes)),
                 time.monotonic() - started)
        self.sink = ReplaySink(links.replay, reward, links.episodes, links.run_frames)
        self.server = GameServer(cfg, self.policy, _WatchedSink(self.sink, links.watch))
        log.info("serving game clients on %s:%d", *self.server.address)
        self._watch = links.supervisor.watch("server")
        self._watch.start(functools.partial(self.server.serve_forever,
                                            heartbeat=self._watch.beat))

    @property
    def frames(self) -> int:
        return self.policy.frames

    def collect(self) -> None:
        self.stop.wait(SERVER_POLL_S)

    def apply(self, settings: OperatorSettings) -> None:
        """Reply bytes 3 and 4 of every later reply; the Lua script applies them when it
        starts a game."""
        self.server.settings.start_level_min = settings.start_level
        self.server.settings.start_advanced = int(settings.start_advanced)

    def metrics(self) -> dict:
        stats = self.server.stats.snapshot()
        write_queue, write_queue_peak = self.sink.queue_depths()
        return {"clients": stats["clients"], "inference_ms": stats["latency_ms_p50"],
                "latency_ms_p50": stats["latency_ms_p50"],
                "latency_ms_p99": stats["latency_ms_p99"], "drops": stats["drops"],
                "queued_frames": stats["queued_frames"],
                "queued_frames_peak": stats["queued_frames_peak"],
                "write_queue": write_queue, "write_queue_peak": write_queue_peak}

    def games(self) -> list[int]:
        return self.server.client_ids()

    def close(self) -> None:
        """Stop serving, then write every frame served into replay."""
        self.server.stop()
        self._watch.join(timeout=10)
        self.sink.close()


class _WatchedSink:
    """The replay sink, copying the watched clients' frames on the way (server thread)."""

    def __init__(self, sink: ReplaySink, watch: FrameWatch):
        self.sink, self.watch = sink, watch

    def push(self, client_ids: np.ndarray, batch: FrameBatch, output: PolicyOutput) -> None:
        watched = self.watch.watched()
        if watched:
            for row in np.flatnonzero(np.isin(client_ids, watched)).tolist():
                self.watch.put(served_frame(int(client_ids[row]), batch, row, output))
        self.sink.push(client_ids, batch, output)

    def disconnect(self, client_id: int) -> None:
        self.watch.forget(client_id)
        self.sink.disconnect(client_id)
