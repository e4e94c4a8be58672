"""Greedy evaluation of a checkpoint on the simulator, beside the expert and a random policy.

All three play the same games (same seed, so the same per-game randomness) from a new game to
its first game over; the network acts greedily (argmax of expected Q, no exploration, no
expert).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from tempest_jax import learner as learner_lib
from tempest_jax.checkpoint import Checkpointer
from tempest_jax.sim import play

POLICY_ORDER = ("network", "expert", "random")


def checkpoint_dir(path: str | Path) -> Path:
    """A run directory or its checkpoints/ directory → the checkpoints directory."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.is_dir():
        return path
    raise FileNotFoundError(f"{path}: no such run or checkpoint directory")


def greedy_policy(learner: learner_lib.Learner):
    support = jnp.asarray(learner.support)

    def policy(params, frame, key):
        q = learner_lib.expected_q(learner.network.apply(params, frame.state), support)
        return jnp.argmax(q, axis=-1).astype(jnp.int32)

    return policy


def evaluate(path: str | Path, games: int, seed: int = 0, max_ticks: int = 100_000,
             start_level: int = 1, show_progress: bool = True) -> dict:
    """Summaries (sim.play.summary) of the network, the expert and a random policy."""
    checkpointer = Checkpointer(checkpoint_dir(path), async_save=False)
    try:
        cfg = checkpointer.saved_config()
        learner = learner_lib.make_learner(cfg)
        restored = checkpointer.restore(learner, cfg)
    finally:
        checkpointer.close()
    policies = {"network": greedy_policy(learner), "expert": "expert", "random": "random"}
    results = {"checkpoint": str(path), "step": restored.step,
               "frames": int(restored.counters.get("frames", 0)), "games": games,
               "seed": seed}
    for name in POLICY_ORDER:
        def progress(ticks, finished, name=name):
            if show_progress:
                bar = "#" * (30 * finished // games)
                print(f"\r{name:>8} [{bar:<30}] {finished}/{games} games over, "
                      f"{ticks:,} ticks", end="", file=sys.stderr, flush=True)

        stats = play.play(policies[name], games, max_ticks=max_ticks, seed=seed,
                          start_level=start_level, params=restored.train_state.params,
                          progress=progress)
        if show_progress:
            print(file=sys.stderr)
        results[name] = play.summary(jax.device_get(stats))
    return results
