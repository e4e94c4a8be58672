"""Play whole simulated games with a fixed policy and collect per-game statistics.

Used by `tempest-jax sim play` and by the tests that compare the expert with a random policy.
Each game is followed until its first game over (or the tick limit); the simulator then starts
a new game on its own, which is not counted.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.sim import game as G

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


@partial(jax.jit, static_argnums=(0, 1))
def _run_chunk(ticks, policy, params, state, frame, stats, key):
    def body(carry, key):
        state, frame, stats = carry
        state, frame = sim._step(state, policy(params, frame, key))
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
        return (state, frame, stats), None

    (state, frame, stats), _ = jax.lax.scan(body, (state, frame, stats),
                                            jax.random.split(key, ticks))
    return state, frame, stats


def play(policy, games: int, max_ticks: int = 100_000, seed: int = 0,
         start_level: int = 1, params=None, progress=None) -> dict[str, np.ndarray]:
    """Per-game statistics (numpy arrays) of `games` games played by `policy`, for at most
    `max_ticks` ticks (rounded up to whole chunks of CHUNK_TICKS).

    `policy` is "expert", "random", or a function policy(params, frame, key) -> int32[games]
    joint actions (hashable: it is a static argument of the compiled rollout). `progress`, if
    given, is called with (ticks played, games finished) after every chunk."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        policy = NAMED_POLICIES[policy]
    key, reset_key = jax.random.split(jax.random.key(seed))
    state, frame = sim.reset(reset_key, games, start_level)
    zeros = jnp.zeros(games, jnp.int32)
    stats = GameStats(finished=jnp.zeros(games, bool), score=zeros,
                      level=zeros + start_level, deaths=zeros, death_level_sum=zeros,
                      ticks=zeros)
    done_ticks = 0
    while done_ticks < max_ticks and not bool(jnp.all(stats.finished)):
        key, sub = jax.random.split(key)
        state, frame, stats = _run_chunk(CHUNK_TICKS, policy, params, state, frame, stats, sub)
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
