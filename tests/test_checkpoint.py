"""Orbax checkpoints: exact resume, keep-last-N, incompatible configs refused by name."""

import jax
import numpy as np
import pytest
from learner_testing import TableNetwork, random_batch

from tempest_jax.checkpoint import Checkpointer, CheckpointMismatchError
from tempest_jax.config import load_config
from tempest_jax.learner import make_learner

OBS, ACTIONS = 8, 4


def table_learner(cfg):
    """A tabular network keeps these tests quick; the Tempest network's checkpoint round trip
    runs in test_learner_parallel.py on four devices."""
    return make_learner(cfg, TableNetwork(ACTIONS, cfg.network.num_atoms), obs_size=OBS,
                        num_actions=ACTIONS)


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("smoke")
    batches = random_batch(np.random.default_rng(0), 16, OBS, ACTIONS, leading=(2,))
    return cfg, table_learner(cfg), batches


def test_resume_gives_the_identical_next_update(setup, tmp_path):
    cfg, learner, batches = setup
    state = learner.init(jax.random.key(0))
    state, _, _ = learner.update_many(state, batches, bc_weight=0.5)
    rng = jax.random.key(42)
    counters = {"frames": 123_456, "episodes": 7, "pulse_until": 0}

    ckpt = Checkpointer(tmp_path, keep=2)
    ckpt.save(int(state.step), learner, state, counters, cfg, rng=rng)
    # The save has copied the arrays, so the state may be donated to the next update at once.
    continued, metrics, priorities = learner.update_many(state, batches, bc_weight=0.5)
    continued = jax.device_get(continued)
    ckpt.wait()
    ckpt.close()

    restored = Checkpointer(tmp_path).restore(learner, cfg)
    assert restored.step == 2 and restored.counters == counters
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(rng))
    assert restored.config == cfg
    resumed, metrics_again, priorities_again = learner.update_many(
        restored.train_state, batches, bc_weight=0.5)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed), continued)
    jax.tree.map(np.testing.assert_array_equal, metrics_again, metrics)
    np.testing.assert_array_equal(priorities_again, priorities)


def test_keeps_the_last_n(setup, tmp_path):
    cfg, learner, _ = setup
    state = learner.init(jax.random.key(1))
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, learner, state, {"frames": step}, cfg)
    ckpt.wait()
    assert ckpt.all_steps() == [20, 30] and ckpt.latest_step() == 30
    restored = ckpt.restore(learner, cfg, step=20)
    assert restored.counters == {"frames": 20} and restored.rng is None
    ckpt.close()


def test_incompatible_config_is_refused_naming_the_keys(setup, tmp_path):
    cfg, learner, _ = setup
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, learner, learner.init(jax.random.key(2)), {}, cfg)
    ckpt.wait()
    other = cfg.replace(network={"trunk_width": 48, "num_atoms": 21})
    with pytest.raises(CheckpointMismatchError) as err:
        ckpt.restore(table_learner(other), other)
    message = str(err.value)
    assert "network.trunk_width: checkpoint has 32, config has 48" in message
    assert "network.num_atoms: checkpoint has 51, config has 21" in message
    assert ckpt.saved_config() == cfg
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "empty").restore(learner, cfg)
    ckpt.close()
