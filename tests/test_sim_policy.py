"""The expert, driving the simulator through the action table, beats a random policy."""

from __future__ import annotations

import pytest

from tempest_jax.sim import play

pytestmark = pytest.mark.timeout(300)

GAMES = 100
TICKS = 2500


def test_expert_survives_longer_and_scores_more_than_random():
    expert = play.play("expert", GAMES, max_ticks=TICKS, seed=11)
    random = play.play("random", GAMES, max_ticks=TICKS, seed=11)
    e, r = play.summary(expert), play.summary(random)
    assert e["mean_score"] > 2 * r["mean_score"]
    assert e["frames_per_life"] > r["frames_per_life"]
    assert expert["deaths"].mean() < random["deaths"].mean()
    assert e["mean_level"] > r["mean_level"]
    assert random["deaths"].sum() > 0


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="policy"):
        play.play("greedy", 2)
