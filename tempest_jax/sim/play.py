"""Play whole simulated games with a fixed policy and collect per-game statistics.

Used by `tempest-jax sim play`, `tempest-jax eval` and by the tests that compare the expert
with a random policy. Each game is followed until its first game over (or the tick limit); the
simulator then starts a new game on its own, which is not counted. A `FrameRecorder` keeps, for
the first few games, every frame the policy acted on (for videos).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.protocol import HEADER_FIELDS
from tempest_jax.sim import game as G
from tempest_jax.sim.compiling import jit

POLICIES = ("expert", "random")
CHUNK_TICKS = 500


@struct.dataclass
class GameStats:
    finished: jax.Array      # bool: the first game ended within the tick limit
    score: jax.Array         # score at game over (or now, when unfinished)
    level: jax.Array         # highest 1-based level reached
    deaths: jax.Array        # lives lost
    death_level_sum: jax.Array   # sum of the 1-based levels of those deaths
    ticks: jax.Array         # ticks played until game over (or now)


def expert_policy(params, frame, key):
    """The expert's executed-and-stored joint action (`params` unused)."""
    return sim.expert_actions(frame).astype(jnp.int32)


def random_policy(params, frame, key):
    """A uniformly random joint action (`params` unused)."""
    return jax.random.randint(key, frame.gamestate.shape, 0, F.NUM_ACTIONS, jnp.int32)


NAMED_POLICIES = {"expert": expert_policy, "random": random_policy}


@dataclass(frozen=True)
class GameRecording:
    """One game, tick by tick: the frame the policy acted on (state and header fields), the
    joint action it chose and, when recorded, the Q-values of the 44 actions on that frame.
    Its length is the game's tick count."""

    state: np.ndarray                  # (T, 195)
    header: dict[str, np.ndarray]      # protocol header field -> (T,)
    action: np.ndarray                 # (T,)
    q_values: np.ndarray | None        # (T, 44)

    def __len__(self) -> int:
        return len(self.action)

    def header_at(self, tick: int) -> dict:
        return {name: values[tick] for name, values in self.header.items()}


@dataclass
class FrameRecorder:
    """Give to `play` to record its first `games` games (see GameRecording). `q_values`, a
    function (params, states (k, 195)) -> (k, 44), adds the Q-values of each frame."""

    games: int
    q_values: Callable | None = None
    _chunks: list = field(default_factory=list, repr=False)

    def add(self, seen: dict) -> None:
        self._chunks.append(jax.device_get(seen))

    def recordings(self) -> list[GameRecording]:
        """The recorded games, each cut to the ticks it played."""
        seen = {k: np.concatenate([c[k] for c in self._chunks]) for k in self._chunks[0]}
        games = []
        for g in range(self.games):
            live = seen["live"][:, g]
            games.append(GameRecording(
                state=seen["state"][live, g],
                header={name: seen[name][live, g] for name in HEADER_FIELDS[1:]},
                action=seen["action"][live, g],
                q_values=seen["q_values"][live, g] if "q_values" in seen else None))
        return games


def _seen(frame, actions, finished, params, record, q_values) -> dict:
    """What a recorder keeps of one tick: the first `record` games' frames and actions."""
    seen = {"live": ~finished[:record], "action": actions[:record],
            "state": frame.state[:record],
            **{name: getattr(frame, name)[:record] for name in HEADER_FIELDS[1:]}}
    if q_values is not None:
        seen["q_values"] = q_values(params, frame.state[:record])
    return seen


@jit(static_argnums=(0, 1, 2, 3))
def _run_chunk(ticks, policy, record, q_values, params, state, frame, stats, key):
    def body(carry, key):
        state, frame, stats = carry
        actions = policy(params, frame, key)
        seen = _seen(frame, actions, stats.finished, params, record, q_values) if record else None
        state, frame = sim._step(state, actions)
        live = ~stats.finished
        level1 = frame.level + 1
        died = live & (frame.done != 0)
        over = live & (frame.gamestate == G.GS_GAME_OVER)
        stats = GameStats(
            finished=stats.finished | over,
            score=jnp.where(live, frame.score, stats.score),
            level=jnp.where(live, jnp.maximum(stats.level, level1), stats.level),
            deaths=stats.deaths + died,
            death_level_sum=stats.death_level_sum + jnp.where(died, level1, 0),
            ticks=stats.ticks + live)
        return (state, frame, stats), seen

    (state, frame, stats), seen = jax.lax.scan(body, (state, frame, stats),
                                               jax.random.split(key, ticks))
    return state, frame, stats, seen


def play(policy, games: int, max_ticks: int = 100_000, seed: int = 0,
         start_level: int = 1, params=None, progress=None,
         recorder: FrameRecorder | None = None) -> dict[str, np.ndarray]:
    """Per-game statistics (numpy arrays) of `games` games played by `policy`, for at most
    `max_ticks` ticks (rounded up to whole chunks of CHUNK_TICKS).

    `policy` is "expert", "random", or a function policy(params, frame, key) -> int32[games]
    joint actions (hashable: it is a static argument of the compiled rollout). `progress`, if
    given, is called with (ticks played, games finished) after every chunk. `recorder` records
    the first `recorder.games` games frame by frame."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        policy = NAMED_POLICIES[policy]
    record = recorder.games if recorder is not None else 0
    if not 0 <= record <= games:
        raise ValueError(f"cannot record {record} of {games} games")
    key, reset_key = jax.random.split(jax.random.key(seed))
    state, frame = sim.reset(reset_key, games, start_level)
    zeros = jnp.zeros(games, jnp.int32)
    stats = GameStats(finished=jnp.zeros(games, bool), score=zeros,
                      level=zeros + start_level, deaths=zeros, death_level_sum=zeros,
                      ticks=zeros)
    done_ticks = 0
    while done_ticks < max_ticks and not bool(jnp.all(stats.finished)):
        key, sub = jax.random.split(key)
        state, frame, stats, seen = _run_chunk(
            CHUNK_TICKS, policy, record, recorder.q_values if record else None, params, state,
            frame, stats, sub)
        if record:
            recorder.add(seen)
        done_ticks += CHUNK_TICKS
        if progress is not None:
            progress(done_ticks, int(stats.finished.sum()))
    return {k: np.asarray(v) for k, v in vars(stats).items()}


def summary(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean/median score, level reached, ticks per life and the mean level of a death."""
    deaths = stats["deaths"]
    total_deaths = max(int(deaths.sum()), 1)
    return {
        "games": int(stats["score"].shape[0]),
        "max_score": int(stats["score"].max()),
        "finished": int(stats["finished"].sum()),
        "mean_score": float(stats["score"].mean()),
        "median_score": float(np.median(stats["score"])),
        "mean_level": float(stats["level"].mean()),
        "max_level": int(stats["level"].max()),
        "frames_per_life": float(stats["ticks"].sum() / total_deaths),
        "mean_death_level": float(stats["death_level_sum"].sum() / total_deaths),
    }
