"""The update learns a tiny deterministic MDP to its exact return distributions."""

import jax
import numpy as np
from learner_testing import TableNetwork

from tempest_jax.actor import Inference
from tempest_jax.config import load_config
from tempest_jax.learner import Batch, make_learner

STATES, ACTIONS = 5, 2
RIGHT, QUIT = 0, 1


def chain_transitions() -> Batch:
    """States 0..4 in a row. RIGHT moves one state right for reward 1 (past state 4 the episode
    ends); QUIT ends the episode with reward 0. Undiscounted, so from state i RIGHT returns
    exactly 5 − i and QUIT exactly 0, both on atoms of the support 0..10."""
    eye = np.eye(STATES, dtype=np.float16)
    rows = []
    for s in range(STATES):
        last = s == STATES - 1
        rows.append((eye[s], RIGHT, 1.0, 0.0 if last else 1.0, eye[min(s + 1, STATES - 1)]))
        rows.append((eye[s], QUIT, 0.0, 0.0, eye[s]))
    obs, action, reward, discount, next_obs = (np.stack(c) for c in zip(*rows))
    n = len(rows)
    return Batch(obs=obs, action=action.astype(np.int32), reward=reward.astype(np.float32),
                 discount=discount.astype(np.float32), next_obs=next_obs,
                 is_expert=np.zeros(n, bool), weight=np.ones(n, np.float32))


def test_learns_the_chain_return_distributions():
    cfg = load_config("smoke", ["network.v_min=0", "network.v_max=10", "network.num_atoms=11",
                                "learner.lr=0.05", "learner.lr_min=0.05", "learner.warmup_steps=0",
                                "learner.target_update=20", "learner.grad_clip=0"])
    learner = make_learner(cfg, TableNetwork(ACTIONS, 11), obs_size=STATES, num_actions=ACTIONS)
    state = learner.init(jax.random.key(0))
    batches = jax.tree.map(lambda x: np.stack([x] * 100), chain_transitions())
    for _ in range(8):
        state, metrics, _ = learner.update_many(state, batches, bc_weight=0.0)
    assert not np.any(metrics["skipped"])

    eye = np.eye(STATES, dtype=np.float32)
    probs = jax.nn.softmax(learner.network.apply(state.params, eye), axis=-1)
    expected = np.zeros((STATES, ACTIONS, 11))
    expected[np.arange(STATES), RIGHT, STATES - np.arange(STATES)] = 1.0
    expected[:, QUIT, 0] = 1.0
    np.testing.assert_allclose(probs, expected, atol=0.02)
    inference = Inference(learner, "float32")
    np.testing.assert_allclose(inference.q_values(state.params, eye),
                               expected @ np.arange(11), atol=0.1)
    np.testing.assert_array_equal(inference.greedy_actions(state.params, eye), [RIGHT] * STATES)
