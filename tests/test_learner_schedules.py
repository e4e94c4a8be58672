"""Schedules (docs/learning.md): values at their breakpoints, numpy and jit alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tempest_jax import schedules
from tempest_jax.config import Config


@pytest.fixture(scope="module")
def cfg():
    return Config()


def test_frame_schedules_at_breakpoints(cfg):
    s = cfg.schedule
    assert schedules.epsilon(0, s) == pytest.approx(1.0)
    assert schedules.epsilon(250_000, s) == pytest.approx(0.505)
    assert schedules.epsilon(10**9, s) == pytest.approx(0.01)
    assert schedules.epsilon(10**9, s, zoom=True) == pytest.approx(0.002)
    assert schedules.epsilon(10**9, s, pulse_until=10**9 + 1) == pytest.approx(0.25)
    assert schedules.epsilon(10**9, s, pulse_until=10**9) == pytest.approx(0.01)
    assert schedules.expert_ratio(0, s) == pytest.approx(0.5)
    assert schedules.expert_ratio(0, s, zoom=True) == pytest.approx(1.0)
    assert schedules.expert_ratio(5_000_000, s) == pytest.approx(0.02)
    assert schedules.per_beta(5_000_000, cfg.replay) == pytest.approx(0.7)
    assert schedules.per_beta(0, cfg.replay) == cfg.replay.beta_start
    assert schedules.per_beta(10**12, cfg.replay) == cfg.replay.beta_end
    assert schedules.bc_weight(400_000, s) == pytest.approx(1.0)
    assert schedules.bc_weight(1_500_000, s) == pytest.approx(0.5005)
    assert schedules.bc_weight(3_000_000, s) == pytest.approx(0.001)
    assert schedules.zap_gate(2_500_000, s) == pytest.approx(0.75)


def test_learning_rate_warmup_then_cosine_with_restarts(cfg):
    lc = cfg.learner
    assert schedules.learning_rate(0, lc) == pytest.approx(1e-4 / 5000)
    assert schedules.learning_rate(4999, lc) == pytest.approx(1e-4)
    assert schedules.learning_rate(5000, lc) == pytest.approx(1e-4)
    assert schedules.learning_rate(5000 + 1_500_000, lc) == pytest.approx(7e-5)
    assert schedules.learning_rate(5000 + 3_000_000 - 1, lc) == pytest.approx(4e-5, rel=1e-6)
    assert schedules.learning_rate(5000 + 3_000_000, lc) == pytest.approx(1e-4)  # restart


def test_jit_and_numpy_agree(cfg):
    steps = np.array([0, 100, 4999, 5000, 800_000, 3_004_999, 3_005_000])
    frames = np.array([0, 1, 300_000, 2_000_000, 20_000_000])
    jitted = jax.jit(lambda t: schedules.learning_rate(t, cfg.learner))
    np.testing.assert_allclose(jitted(jnp.asarray(steps)),
                               schedules.learning_rate(steps, cfg.learner), rtol=1e-5)
    for fn in (schedules.epsilon, schedules.expert_ratio, schedules.bc_weight,
               schedules.zap_gate):
        np.testing.assert_allclose(jax.jit(lambda f, fn=fn: fn(f, cfg.schedule))(
            jnp.asarray(frames, jnp.float32)), fn(frames, cfg.schedule), rtol=1e-5, atol=1e-7)
