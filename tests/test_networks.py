"""The Tempest network: parameter count, token building from the feature layout, masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tempest_jax.config import Config, load_config
from tempest_jax.features import LAYOUT, NUM_ACTIONS, NUM_ENEMY_SLOTS, STATE_SIZE
from tempest_jax.networks import (
    LaneCrossAttention,
    TempestNetwork,
    enemy_tokens,
    lane_tokens,
    param_count,
)

REFERENCE_PARAM_COUNT = 934_071  # the original Tempest AI network's parameter count


@pytest.fixture(scope="module")
def small():
    net = TempestNetwork.from_config(load_config("smoke").network)
    params = net.init(jax.random.key(0), jnp.zeros((1, STATE_SIZE)))
    return net, params, jax.jit(net.apply)


def _random_obs(rng, batch):
    return rng.uniform(0.0, 1.0, (batch, STATE_SIZE)).astype(np.float32)


def test_default_network_has_the_reference_parameter_count():
    net = TempestNetwork.from_config(Config().network)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, STATE_SIZE)))
    assert param_count(shapes) == REFERENCE_PARAM_COUNT


def test_output_shape_and_finite(small):
    net, params, apply = small
    logits = apply(params, _random_obs(np.random.default_rng(0), 5))
    assert logits.shape == (5, NUM_ACTIONS, net.num_atoms)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_all_empty_enemy_slots_give_finite_output(small):
    _, params, apply = small
    obs = _random_obs(np.random.default_rng(1), 4)
    obs[:, LAYOUT["enemy_depth"].slice] = 0.0
    _, readable = enemy_tokens(jnp.asarray(obs))
    assert np.all(readable), "with no enemy present nothing is masked"
    assert np.all(np.isfinite(apply(params, obs)))


def test_lane_tokens_follow_the_layout():
    obs = np.zeros((1, STATE_SIZE), np.float32)
    obs[0, LAYOUT["spike"].slice] = np.linspace(0, 1, 16)
    obs[0, LAYOUT["tube_angle"].slice] = np.linspace(1, 0, 16)
    obs[0, LAYOUT["player_position"].start] = 6 / 15
    tokens = np.asarray(lane_tokens(jnp.asarray(obs)))[0]
    np.testing.assert_allclose(tokens[:, 0], np.linspace(0, 1, 16), atol=1e-7)
    np.testing.assert_allclose(tokens[:, 1], np.linspace(1, 0, 16), atol=1e-7)
    np.testing.assert_array_equal(tokens[:, 2], np.eye(16)[6])
    np.testing.assert_allclose(tokens[:, 3], np.sin(2 * np.pi * np.arange(16) / 16), atol=1e-6)
    np.testing.assert_allclose(tokens[:, 4], np.cos(2 * np.pi * np.arange(16) / 16), atol=1e-6)


def test_enemy_tokens_sorted_nearest_first_with_empty_last():
    obs = np.zeros((1, STATE_SIZE), np.float32)
    depth = np.array([0.5, 0.0, 0.2, 0.9, 0.0, 0.2, 0.0], np.float32)
    obs[0, LAYOUT["enemy_depth"].slice] = depth
    obs[0, LAYOUT["enemy_rel_lane"].slice] = np.arange(NUM_ENEMY_SLOTS) / 15
    tokens, readable = (np.asarray(a)[0] for a in enemy_tokens(jnp.asarray(obs)))
    # Stable: the two enemies at depth 0.2 keep slot order (2 before 5); empty slots last.
    np.testing.assert_array_equal(np.round(tokens[:, 6] * 15), [2, 5, 0, 3, 1, 4, 6])
    np.testing.assert_array_equal(readable, [True] * 4 + [False] * 3)


def test_encoder_ignores_empty_slots_and_slot_order(small):
    """The encoder reads only present enemies, in depth order; (the trunk also sees the raw
    state, so these invariances are the encoder's)."""
    net, params, _ = small
    encoder = LaneCrossAttention(net.attn_dim, net.attn_heads)
    encoder_params = {"params": params["params"]["encoder"]}
    encode = jax.jit(lambda obs: encoder.apply(encoder_params, lane_tokens(obs),
                                               *enemy_tokens(obs)))
    rng = np.random.default_rng(2)
    obs = _random_obs(rng, 3)
    obs[:, LAYOUT["enemy_depth"].start + 4] = 0.0  # slot 4 empty
    base = encode(obs)

    junk = obs.copy()  # everything an empty slot carries besides its depth is ignored
    for name in ("enemy_rel_lane", "enemy_top_rel_lane", "toprail_rel_lane",
                 "enemy_delta_lane", "enemy_delta_depth"):
        junk[:, LAYOUT[name].start + 4] = rng.uniform(-1, 1, 3)
    info = LAYOUT["enemy_info"]
    junk[:, info.start + 4 * 6: info.start + 5 * 6] = rng.uniform(0, 1, (3, 6))
    np.testing.assert_allclose(encode(junk), base, atol=1e-5)

    perm = rng.permutation(NUM_ENEMY_SLOTS)
    shuffled = obs.copy()
    for name in ("enemy_rel_lane", "enemy_depth", "enemy_top_rel_lane", "toprail_rel_lane",
                 "enemy_delta_lane", "enemy_delta_depth"):
        shuffled[:, LAYOUT[name].slice] = obs[:, LAYOUT[name].slice][:, perm]
    shuffled[:, info.slice] = obs[:, info.slice].reshape(3, 7, 6)[:, perm].reshape(3, 42)
    np.testing.assert_allclose(encode(shuffled), base, atol=1e-5)


def _dot_operand_dtypes(jaxpr) -> list[tuple[str, str, str]]:
    """(lhs, rhs, out) dtypes of every dot_general in a jaxpr, nested jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)))
        for param in eqn.params.values():
            if hasattr(param, "jaxpr"):
                found += _dot_operand_dtypes(getattr(param.jaxpr, "jaxpr", param.jaxpr))
    return found


def test_bfloat16_matmuls_take_bfloat16_matrices_and_accumulate_in_float32(small):
    net, params, apply = small
    mixed = net.clone(matmul_dtype=jnp.bfloat16)
    stored = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.ndim >= 2 else x, params)
    obs = _random_obs(np.random.default_rng(2), 32)
    jaxpr = jax.make_jaxpr(mixed.apply)(stored, obs).jaxpr
    dots = _dot_operand_dtypes(jaxpr)
    # The five projections of the encoder, the trunk and the four head layers multiply in
    # bfloat16 into float32; only the attention's own score and mixing products stay float32.
    weight_dots = [d for d in dots if d[:2] == ("bfloat16", "bfloat16")]
    assert len(weight_dots) == 5 + net.trunk_layers + 4, dots
    assert all(out == "float32" for *_, out in dots)
    assert all(d == ("float32", "float32", "float32") for d in dots if d not in weight_dots)
    # The same function of the same parameters: only the products' rounding differs.
    exact = np.asarray(apply(params, obs))
    approx = np.asarray(jax.jit(mixed.apply)(stored, obs))
    assert approx.dtype == np.float32
    np.testing.assert_allclose(approx, exact, atol=0.05 * np.abs(exact).max())
    assert not np.array_equal(approx, exact), "bfloat16 products round differently"
