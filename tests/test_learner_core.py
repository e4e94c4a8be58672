"""The C51 update's pieces: projection, double-DQN target, weights, priorities, BC, guards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from learner_testing import TableNetwork, random_batch

from tempest_jax.actor import Inference
from tempest_jax.config import load_config
from tempest_jax.learner import (
    Batch,
    atom_gap,
    bc_cross_entropy,
    categorical_projection,
    double_dqn_target,
    make_learner,
    make_support,
)

OBS, ACTIONS, ATOMS = 6, 3, 11


def project_reference(reward, discount, probs, v_min, v_max):
    """Brute-force float64 projection, the textbook C51 split of each mass between the atoms
    below (l) and above (u) it."""
    num_atoms = probs.shape[1]
    gap = (v_max - v_min) / (num_atoms - 1)
    support = np.linspace(v_min, v_max, num_atoms)
    out = np.zeros_like(probs, dtype=np.float64)
    for b in range(probs.shape[0]):
        for i in range(num_atoms):
            tz = min(max(reward[b] + discount[b] * support[i], v_min), v_max)
            pos = (tz - v_min) / gap
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            if lo == hi:
                out[b, lo] += probs[b, i]
            else:
                out[b, lo] += probs[b, i] * (hi - pos)
                out[b, hi] += probs[b, i] * (pos - lo)
    return out


@pytest.fixture(scope="module")
def table_learner():
    cfg = load_config("smoke", ["network.v_min=-5", "network.v_max=5", f"network.num_atoms={ATOMS}",
                                "learner.target_update=3", "learner.warmup_steps=0",
                                "learner.lr=0.01", "learner.lr_min=0.01"])
    learner = make_learner(cfg, TableNetwork(ACTIONS, ATOMS), obs_size=OBS, num_actions=ACTIONS)
    grad = jax.jit(jax.grad(lambda p, t, b, w: learner.loss_fn(p, t, b, w)[0]))
    loss = jax.jit(learner.loss_fn)
    return learner, loss, grad


@pytest.mark.parametrize("v_min,v_max,num_atoms", [(-100.0, 100.0, 51), (-10.0, 10.0, 5)])
def test_projection_matches_float64_reference(v_min, v_max, num_atoms):
    rng = np.random.default_rng(0)
    support = make_support(v_min, v_max, num_atoms)
    gap = (v_max - v_min) / (num_atoms - 1)
    batch = 64
    reward = rng.uniform(1.5 * v_min, 1.5 * v_max, batch)  # some beyond the support
    discount = rng.choice([0.0, 0.5, 0.99 ** 12, 1.0], batch)
    # Rows that land exactly on atoms: integer multiples of the atom gap, discount 0 or 1.
    reward[:16] = rng.integers(-num_atoms // 2, num_atoms // 2, 16) * gap
    discount[:16] = rng.choice([0.0, 1.0], 16)
    reward[16:20] = [3 * v_max, 3 * v_min, v_max, v_min]  # far beyond and on the ends
    probs = rng.dirichlet(np.ones(num_atoms), batch)

    expected = project_reference(reward, discount, probs, v_min, v_max)
    target_atoms = reward[:, None] + discount[:, None] * support.astype(np.float64)[None]
    got = categorical_projection(jnp.asarray(target_atoms, jnp.float32),
                                 jnp.asarray(probs, jnp.float32), jnp.asarray(support),
                                 atom_gap(support))
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(np.sum(got, axis=1), 1.0, atol=1e-5)


def test_support_is_built_in_float64():
    support = make_support(-100.0, 100.0, 51)
    assert support.dtype == np.float32
    np.testing.assert_array_equal(support, np.arange(-100, 101, 4, dtype=np.float32))
    assert atom_gap(support) == 4.0


def test_double_dqn_online_selects_target_evaluates():
    support = jnp.asarray(make_support(-5.0, 5.0, ATOMS))
    # Online: action 1 has the highest expected value. Target: action 0 would, and its
    # distributions differ per action, so the chosen one is identifiable.
    online = np.full((1, ACTIONS, ATOMS), -10.0, np.float32)
    online[0, 0, 5], online[0, 1, 8], online[0, 2, 2] = 10.0, 10.0, 10.0
    target = np.full((1, ACTIONS, ATOMS), -10.0, np.float32)
    target[0, 0, 10], target[0, 1, 3], target[0, 2, 9] = 10.0, 10.0, 10.0
    got = double_dqn_target(jnp.asarray(online), jnp.asarray(target), jnp.zeros(1),
                            jnp.ones(1), support, 1.0)
    np.testing.assert_allclose(got, jax.nn.softmax(target[:, 1]), atol=1e-6)


def test_terminal_transitions_do_not_bootstrap():
    rng = np.random.default_rng(1)
    support = jnp.asarray(make_support(-5.0, 5.0, ATOMS))
    reward = jnp.asarray([2.0, -1.5, 7.0])
    targets = [double_dqn_target(jnp.asarray(rng.normal(0, 3, (3, ACTIONS, ATOMS))),
                                 jnp.asarray(rng.normal(0, 3, (3, ACTIONS, ATOMS))), reward,
                                 jnp.zeros(3), support, 1.0) for _ in range(2)]
    expected = np.zeros((3, ATOMS))
    expected[0, 7] = 1.0                                  # 2.0 is atom 7
    expected[1, 3], expected[1, 4] = 0.5, 0.5             # -1.5 halfway between -2 and -1
    expected[2, 10] = 1.0                                 # 7.0 clipped to 5
    for got in targets:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_importance_weights_scale_the_gradient(table_learner):
    learner, _, grad = table_learner
    state = learner.init(jax.random.key(0))
    batch = random_batch(np.random.default_rng(2), 4, OBS, ACTIONS)
    gradient = lambda w: grad(state.params, state.target_params, batch._replace(weight=w), 0.0)
    weights = np.array([0.5, 2.0, 0.0, 1.0], np.float32)
    combined = jax.tree.map(lambda *gs: sum(w * g for w, g in zip(weights, gs)),
                            *(gradient(np.eye(4, dtype=np.float32)[i]) for i in range(4)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), gradient(weights),
                 combined)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 2 * b, atol=1e-6),
                 gradient(2 * weights), gradient(weights))


def test_priorities_are_unweighted_per_sample_losses(table_learner):
    learner, loss, _ = table_learner
    state = learner.init(jax.random.key(1))
    batch = random_batch(np.random.default_rng(3), 8, OBS, ACTIONS)
    per_row = [float(loss(state.params, state.target_params,
                          jax.tree.map(lambda x, i=i: x[i:i + 1], batch)._replace(
                              weight=np.ones(1, np.float32)), 0.0)[1][0]["rl_loss"])
               for i in range(8)]
    _, _, priorities = learner.update(state, batch, bc_weight=0.5)
    np.testing.assert_allclose(priorities, per_row, rtol=1e-5)


def test_bc_loss_only_on_expert_rows(table_learner):
    learner, loss, _ = table_learner
    state = learner.init(jax.random.key(2))
    rng = np.random.default_rng(4)
    batch = random_batch(rng, 8, OBS, ACTIONS)
    expert = np.array([1, 0, 0, 1, 0, 0, 0, 1], bool)
    batch = batch._replace(is_expert=expert)
    total, ((aux, _)) = loss(state.params, state.target_params, batch, 0.7)
    q = Inference(learner, "float32").q_values(state.params, batch.obs)
    per_row = bc_cross_entropy(q, jnp.asarray(batch.action), 1.0)
    np.testing.assert_allclose(aux["bc_loss"], np.mean(np.asarray(per_row)[expert]), rtol=1e-5)
    np.testing.assert_allclose(total, aux["rl_loss"] + 0.7 * 3 / 8 * aux["bc_loss"], rtol=1e-6)

    other_actions = batch._replace(action=np.where(expert, batch.action, (batch.action + 1) % 3))
    assert float(loss(state.params, state.target_params, other_actions, 0.7)[1][0]["bc_loss"]) \
        == pytest.approx(float(aux["bc_loss"]), rel=1e-6)

    no_expert = batch._replace(is_expert=np.zeros(8, bool))
    total, ((aux, _)) = loss(state.params, state.target_params, no_expert, 0.7)
    assert float(aux["bc_loss"]) == 0.0
    assert float(total) == float(aux["rl_loss"])


def test_bc_gradient_does_not_grow_as_the_q_values_close_up():
    """The BC weight means what it says: the gradient of the BC loss with respect to Q keeps
    its size whether the values of the actions are far apart or nearly equal (a loss on
    standardised Q grows like 1/spread: ×1000 at a spread of 1e-3)."""
    rng = np.random.default_rng(5)
    direction = rng.normal(0, 1, (6, 44))
    direction /= direction.std(axis=-1, keepdims=True)
    action = jnp.asarray(rng.integers(0, 44, 6))
    grad = jax.grad(lambda q: jnp.sum(bc_cross_entropy(q, action, 1.0)))
    norms = {spread: np.linalg.norm(grad(jnp.asarray(5.0 + spread * direction, jnp.float32)),
                                    axis=-1)
             for spread in (1e-3, 0.1, 1.0)}
    for spread, norm in norms.items():
        assert np.all(norm <= np.sqrt(2) + 1e-6), (spread, norm)
        assert np.all(norm >= 0.5), (spread, norm)  # a real gradient, not a vanishing one
    np.testing.assert_allclose(norms[1e-3], norms[0.1], rtol=0.05)
    # Shifting every value of a row changes nothing.
    q = jnp.asarray(direction, jnp.float32)
    np.testing.assert_allclose(bc_cross_entropy(q + 7.0, action, 1.0),
                               bc_cross_entropy(q, action, 1.0), rtol=1e-5)


def test_a_row_with_equal_values_for_every_action_leaves_the_update_finite(table_learner):
    """A state whose Q-values are equal across actions (here: a zero observation, so the table
    network's logits are all zero) must not turn the update into NaN and have it skipped, with
    or without expert rows and BC weight."""
    learner, _, _ = table_learner
    batch = random_batch(np.random.default_rng(11), 4, OBS, ACTIONS)
    obs = batch.obs.copy()
    obs[1] = 0.0
    for is_expert, bc_weight in ((np.zeros(4, bool), 0.0), (np.ones(4, bool), 1.0)):
        state = learner.init(jax.random.key(12))
        state, metrics, priorities = learner.update(
            state, batch._replace(obs=obs, is_expert=is_expert), bc_weight=bc_weight)
        assert float(metrics["skipped"]) == 0.0 and int(state.step) == 1
        assert np.all(np.isfinite(np.asarray(priorities)))
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_non_finite_update_is_skipped_and_counted(table_learner):
    learner, _, _ = table_learner
    state = learner.init(jax.random.key(3))
    before = jax.tree.map(np.asarray, state)
    batch = random_batch(np.random.default_rng(6), 4, OBS, ACTIONS)
    obs = batch.obs.copy()
    obs[2, 0] = np.nan
    state, metrics, priorities = learner.update(state, batch._replace(obs=obs), bc_weight=1.0)
    assert float(metrics["skipped"]) == 1.0 and int(state.skipped) == 1 and int(state.step) == 0
    jax.tree.map(np.testing.assert_array_equal, state.params, before.params)
    assert np.all(np.isfinite(priorities)) and float(priorities[2]) == 0.0


def test_target_syncs_every_target_update_steps(table_learner):
    learner, _, _ = table_learner
    state = learner.init(jax.random.key(4))
    initial = jax.tree.map(np.asarray, state.params)
    batches = random_batch(np.random.default_rng(7), 4, OBS, ACTIONS, leading=(2,))
    state, metrics, priorities = learner.update_many(state, batches, bc_weight=0.0)
    assert priorities.shape == (2, 4) and metrics["loss"].shape == (2,)
    assert int(state.step) == 2
    jax.tree.map(np.testing.assert_array_equal, state.target_params, initial)
    state, _, _ = learner.update(state, jax.tree.map(lambda x: x[0], batches), bc_weight=0.0)
    assert int(state.step) == 3  # target_update = 3
    jax.tree.map(np.testing.assert_array_equal, state.target_params, state.params)


def test_lr_scale_multiplies_the_scheduled_step(table_learner):
    learner, _, _ = table_learner
    batches = random_batch(np.random.default_rng(8), 4, OBS, ACTIONS, leading=(1,))
    start = jax.tree.map(np.asarray, learner.init(jax.random.key(6)).params)
    moves = {}
    for scale in (1.0, 0.5, 0.0):
        state, metrics, _ = learner.update_many(learner.init(jax.random.key(6)), batches,
                                                bc_weight=0.0, lr_scale=scale)
        np.testing.assert_allclose(metrics["lr"], [0.01 * scale], rtol=1e-6)
        moves[scale] = jax.tree.map(lambda a, b: np.asarray(a) - b, state.params, start)
    # Adam's first step has a fixed size, so the step scales exactly with the rate.
    jax.tree.map(lambda half, full: np.testing.assert_allclose(half, full / 2, atol=1e-7),
                 moves[0.5], moves[1.0])
    assert not any(np.any(m) for m in jax.tree.leaves(moves[0.0]))


def test_published_params_survive_later_updates(table_learner):
    learner, _, _ = table_learner
    state = learner.init(jax.random.key(5))
    published = state.params
    snapshot = jax.tree.map(np.asarray, published)
    batch = random_batch(np.random.default_rng(8), 4, OBS, ACTIONS)
    for _ in range(2):
        state, _, _ = learner.update(state, batch, bc_weight=0.0)
    jax.tree.map(np.testing.assert_array_equal, published, snapshot)
    assert Inference(learner, "float32").greedy_actions(published, batch.obs).shape == (4,)


def test_tempest_network_update_end_to_end():
    """The default network on a small config: a K-dispatch runs, metrics are finite, the
    learning rate follows the schedule and the parameters move."""
    cfg = load_config("smoke")
    learner = make_learner(cfg)
    state = learner.init(jax.random.key(0))
    start = jax.tree.map(np.asarray, state.params)
    batches = random_batch(np.random.default_rng(9), 16, 195, 44, leading=(2,))
    state, metrics, priorities = learner.update_many(state, batches, bc_weight=1.0)
    assert set(metrics) >= {"loss", "rl_loss", "bc_loss", "grad_norm", "q_mean", "q_min",
                            "q_max", "lr", "skipped", "agreement"}
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    np.testing.assert_allclose(metrics["lr"], [cfg.learner.lr * 1 / cfg.learner.warmup_steps,
                                               cfg.learner.lr * 2 / cfg.learner.warmup_steps],
                               rtol=1e-6)
    assert priorities.shape == (2, 16) and np.all(priorities > 0)
    moved = jax.tree.map(lambda a, b: np.any(np.asarray(a) != b), state.params, start)
    assert all(jax.tree.leaves(moved))
    actions = Inference(learner, "float32").greedy_actions(state.params,
                                                           np.asarray(batches.obs[0, :5]))
    assert actions.dtype == jnp.int32 and actions.shape == (5,)
    assert isinstance(batches, Batch)
