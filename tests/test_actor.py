"""Action selection: expert ratio, ε-greedy, zap gate, zoom adjustments, batched inference."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.actor import (
    ACTION_DRAWS,
    Inference,
    Overrides,
    ParamStore,
    Segments,
    ServerPolicy,
    advance_segments,
    bucket_size,
    greedy,
    resolve_inference_dtype,
    select_actions,
)
from tempest_jax.bench.protocol_bench import random_wire_frames
from tempest_jax.config import load_config
from tempest_jax.learner import expected_q

CFG = load_config(None).schedule
N = 4000


@jax.jit
def _select(key, greedy, expert, expert_zap, gamestate, frames, overrides):
    draw, *draws = jax.random.uniform(key, (1 + ACTION_DRAWS, *greedy.shape))
    return select_actions(jnp.stack(draws), greedy, expert, expert_zap, gamestate, frames,
                          overrides, CFG, draw)


def run(greedy=0, expert=0, expert_zap=0, gamestate=F.GAMESTATE_PLAYING, frames=0,
        overrides=None, seed=0):
    overrides = overrides or Overrides()
    full = lambda v: jnp.full((N,), v, jnp.int32)
    joint, is_expert = _select(jax.random.key(seed), full(greedy), full(expert),
                               full(expert_zap), full(gamestate), frames,
                               overrides.as_arrays())
    return np.asarray(joint), np.asarray(is_expert)


def test_expert_rows_execute_the_expert_action():
    joint, is_expert = run(greedy=3, expert=40, overrides=Overrides(expert_ratio=1.0))
    assert is_expert.all() and (joint == 40).all()


def test_greedy_when_no_exploration_and_no_expert():
    joint, is_expert = run(greedy=25, expert=40, overrides=Overrides(0.0, 0.0))
    assert not is_expert.any() and (joint == 25).all()


def test_zap_gate_clears_unadvised_network_zaps_early_on():
    zap_action = F.joint_index(1, 1, 4)
    joint, _ = run(greedy=zap_action, overrides=Overrides(0.0, 0.0), frames=0)
    assert (joint == F.joint_index(1, 0, 4)).all()  # gate fully closed at frame 0
    joint, _ = run(greedy=zap_action, expert_zap=1, overrides=Overrides(0.0, 0.0))
    assert (joint == zap_action).all()  # the expert advised a zap: kept
    joint, _ = run(greedy=zap_action, overrides=Overrides(0.0, 0.0),
                   frames=CFG.zap_gate_frames // 2)
    assert 0.4 < np.mean(F.decode_joint(joint)[1]) < 0.6  # half open


def test_random_actions_are_uniform_without_zap():
    joint, _ = run(greedy=0, overrides=Overrides(1.0, 0.0))
    fire, zap, spinner = F.decode_joint(joint)
    assert zap.sum() == 0  # eps_zap_prob = 0
    assert 0.45 < fire.mean() < 0.55
    counts = np.bincount(spinner, minlength=F.NUM_SPINNER)
    assert counts.min() > N / F.NUM_SPINNER * 0.75


def test_schedule_and_zoom_adjustments():
    _, is_expert = run(frames=0)
    assert 0.45 < is_expert.mean() < 0.55  # expert ratio 0.5 at the start
    _, is_expert = run(frames=0, gamestate=F.GAMESTATE_ZOOM)
    assert is_expert.all()  # doubled in zoom
    joint, _ = run(greedy=7, frames=10**9, overrides=Overrides(expert_ratio=0.0))
    assert 0.98 < np.mean(joint == 7) <= 1.0  # ε at its floor of 0.01
    joint, _ = run(greedy=7, frames=0, gamestate=F.GAMESTATE_ZOOM,
                   overrides=Overrides(expert_ratio=0.0))
    random_share = 1 - np.mean(joint == 7)
    assert 0.12 < random_share < 0.22  # ε = 1.0 × 0.2 in zoom (minus random hits on 7)


def test_pulse_raises_epsilon():
    late = 10**8
    joint, _ = run(greedy=7, frames=late, overrides=Overrides(expert_ratio=0.0, pulse=True))
    assert 0.15 < 1 - np.mean(joint == 7) < 0.3
    joint, _ = run(greedy=7, frames=late, overrides=Overrides(expert_ratio=0.0, pulse=False))
    assert 1 - np.mean(joint == 7) < 0.02


def test_segments_keep_one_draw_for_their_length_and_end_with_a_life():
    """Four streams over six frames, segments of 3 frames; stream 2's life ends at frame 1.
    A draw taken at frame t is 10·(t+1) + stream: each cell shows the draw a frame acts on.

        frame      0   1   2   3   4   5
        stream 0  10  10  10  40  40  40
        stream 1  11  11  11  41  41  41
        stream 2  12  12  32  32  32  62   (done at frame 1: a new segment at frame 2)
        stream 3  13  13  13  43  43  43
    """
    segments = Segments(np.zeros(4), np.zeros(4, np.int64))
    seen = []
    for t in range(6):
        fresh = 10.0 * (t + 1) + np.arange(4)
        done = np.array([False, False, t == 1, False])
        segments, draw = advance_segments(segments, fresh, done, 3, xp=np)
        seen.append(draw.tolist())
    assert np.array(seen).T.tolist() == [[10, 10, 10, 40, 40, 40], [11, 11, 11, 41, 41, 41],
                                         [12, 12, 32, 32, 32, 62], [13, 13, 13, 43, 43, 43]]


def test_a_served_client_keeps_its_actor_for_a_whole_segment(smoke_learner):
    """With the expert ratio at 0.5, who acts for a client changes only at its segment
    boundaries (every schedule.expert_segment_frames frames), never within one."""
    _, _, inference, state = smoke_learner
    length = 12
    schedule = load_config("smoke", [f"schedule.expert_segment_frames={length}"]).schedule
    policy = ServerPolicy(inference, ParamStore(inference.params(state.params)), schedule,
                          key=jax.random.key(2), max_clients=8,
                          overrides=lambda: Overrides(0.0, 0.5))
    batch = P.decode_wire(random_wire_frames(8, seed=4))
    batch = P.FrameBatch(header={**batch.header, "done": np.zeros(8, np.uint8)},
                         state=batch.state, valid=batch.valid)
    actors = np.array([policy(np.arange(8), batch).is_expert for _ in range(10 * length)])
    for segment in actors.reshape(10, length, 8):
        assert (segment == segment[0]).all()
    assert 0 < actors.mean() < 1, "both actors play some segments"


def test_served_segments_follow_each_clients_own_frames(smoke_learner):
    """Client 3 sends every other batch (the others' batches of 3 are padded to 4 rows, a
    padding row in client 3's old place) and client 1's life ends at its frame 5: each
    client's actor changes only at its own segment boundaries, counted in its own frames."""
    _, _, inference, state = smoke_learner
    length = 12
    schedule = load_config("smoke", [f"schedule.expert_segment_frames={length}"]).schedule
    policy = ServerPolicy(inference, ParamStore(inference.params(state.params)), schedule,
                          key=jax.random.key(3), max_clients=4,
                          overrides=lambda: Overrides(0.0, 0.5))
    frames = P.decode_wire(random_wire_frames(4, seed=5))
    seen = {client: [] for client in range(4)}
    for t in range(20 * length):
        ids = np.arange(4 if t % 2 == 0 else 3)
        done = np.zeros(len(ids), np.uint8)
        done[1] = t == 5
        header = {name: column[ids] for name, column in frames.header.items()} | {"done": done}
        batch = P.FrameBatch(header=header, state=frames.state[ids], valid=frames.valid[ids])
        for client, expert in zip(ids, policy(ids, batch).is_expert, strict=True):
            seen[client].append(expert)
    starts = {0: range(0, 240, length), 1: [0, *range(6, 240, length)],
              2: range(0, 240, length), 3: range(0, 120, length)}
    for client, actors in seen.items():
        bounds = [*starts[client], len(actors)]
        for a, b in itertools.pairwise(bounds):
            assert len(set(actors[a:b])) == 1, (client, a, b)
        assert 0 < np.mean(actors) < 1, "both actors play some segments"


def test_server_policy_draws_fresh_exploration_every_call(smoke_learner):
    cfg, _learner, inference, state = smoke_learner
    policy = ServerPolicy(inference, ParamStore(inference.params(state.params)), cfg.schedule,
                          key=jax.random.key(4), max_clients=13,
                          frames=10**9)  # zap gate open: it clears nothing
    policy.overrides = lambda: Overrides(epsilon=1.0, expert_ratio=0.0)
    batch = P.decode_wire(random_wire_frames(13))
    calls = np.stack([policy(np.arange(13), batch).joint for _ in range(300)])
    assert len({row.tobytes() for row in calls}) == len(calls)  # the generator moves on
    fire, zap, spinner = F.decode_joint(calls.ravel())
    assert 0.45 < fire.mean() < 0.55
    assert abs(zap.mean() - cfg.schedule.eps_zap_prob) < 0.05
    counts = np.bincount(spinner, minlength=F.NUM_SPINNER)
    assert counts.min() > calls.size / F.NUM_SPINNER * 0.8


def test_server_policy_keeps_no_segment_for_a_client_id_beyond_its_segments(smoke_learner):
    cfg, _learner, inference, state = smoke_learner
    policy = ServerPolicy(inference, ParamStore(inference.params(state.params)), cfg.schedule,
                          key=jax.random.key(5), max_clients=2)
    batch = P.decode_wire(random_wire_frames(2))
    batch.header["done"][:] = 0  # a life's end would end the segment at once
    out = policy(np.array([0, 2]), batch)
    assert out.joint.shape == (2,)
    left = np.asarray(policy._state.segments.left)
    # Client 0 started a segment; client 1 was not in the batch and id 2 has no slot.
    assert left.tolist() == [cfg.schedule.expert_segment_frames - 1, 0]


def test_bucket_sizes():
    assert [bucket_size(n, 1) for n in (1, 3, 8, 9, 16, 17, 100)] == [1, 4, 8, 16, 16, 32, 128]
    assert bucket_size(5, 3) == 9


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def smoke_learner(request):
    from tempest_jax.learner import make_learner
    cfg = load_config("smoke", [f"learner.inference_dtype={request.param}"])
    learner = make_learner(cfg)
    return cfg, learner, Inference(learner, request.param), learner.init(jax.random.key(0))


def test_server_policy_acts_on_a_frame_batch(smoke_learner):
    cfg, learner, inference, state = smoke_learner
    params = inference.params(state.params)
    policy = ServerPolicy(inference, ParamStore(params), cfg.schedule, key=jax.random.key(1),
                          max_clients=13)
    batch = P.decode_wire(random_wire_frames(13))
    policy.overrides = lambda: Overrides(epsilon=0.0, expert_ratio=0.0)
    out = policy(np.arange(13), batch)
    assert out.joint.shape == (13,) and not out.is_expert.any()
    # The actors' network: float32, or bfloat16 matmuls on bfloat16 matrices.
    logits = jax.jit(inference.network.apply)(params, batch.state)
    greedy = np.asarray(jnp.argmax(expected_q(logits, jnp.asarray(learner.support)), -1))
    if cfg.learner.inference_dtype == "float32":
        np.testing.assert_array_equal(
            greedy, np.asarray(inference.greedy_actions(state.params, batch.state)))
    fire, zap, sp = F.decode_joint(greedy)
    gated = F.joint_index(fire, np.where(batch.expert_zap == 0, 0, zap), sp)
    np.testing.assert_array_equal(out.joint, gated)
    policy.overrides = lambda: Overrides(expert_ratio=1.0)
    out = policy(np.arange(13), batch)
    expert = F.expert_joint_action(batch.expert_target, batch.player_seg, batch.is_open != 0,
                                   batch.expert_fire, batch.expert_zap)
    np.testing.assert_array_equal(out.joint, expert)
    assert policy.frames == 26


def test_inference_params_store_matrices_in_the_inference_dtype(smoke_learner):
    cfg, _learner, inference, state = smoke_learner
    params = inference.params(state.params)
    if cfg.learner.inference_dtype == "float32":
        assert params is state.params  # nothing to convert: no copy
        return
    for (path, before), after in zip(jax.tree_util.tree_leaves_with_path(state.params),
                                     jax.tree.leaves(params), strict=True):
        expected = jnp.bfloat16 if before.ndim >= 2 else jnp.float32
        assert after.dtype == expected, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(after, before.astype(expected))
    assert inference.dtype_name == "bfloat16"


@pytest.mark.parametrize("name, has_amx, platform, expected", [
    ("float32", True, "cpu", None),
    ("bfloat16", False, "gpu", "bfloat16"),
    ("auto", True, "cpu", "bfloat16"),
    ("auto", False, "cpu", None),
    ("auto", True, "gpu", None),
])
def test_inference_dtype_resolution(monkeypatch, name, has_amx, platform, expected):
    from tempest_jax import actor
    from tempest_jax.networks import TempestNetwork
    monkeypatch.setattr(actor, "cpu_has_amx_bf16", lambda: has_amx)
    dtype = resolve_inference_dtype(name, TempestNetwork(), platform)
    assert dtype == (None if expected is None else jnp.dtype(expected))


def test_bfloat16_inference_needs_a_network_that_supports_it(monkeypatch):
    import flax.linen as nn

    from tempest_jax import actor
    monkeypatch.setattr(actor, "cpu_has_amx_bf16", lambda: True)
    plain = nn.Dense(4)
    assert resolve_inference_dtype("auto", plain, "cpu") is None
    with pytest.raises(ValueError, match="matmul_dtype"):
        resolve_inference_dtype("bfloat16", plain, "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from tempest_jax.networks import cpu_has_amx_bf16
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert cpu_has_amx_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert not cpu_has_amx_bf16(str(info))
    assert not cpu_has_amx_bf16(str(tmp_path / "missing"))


def test_expected_q_is_the_softmax_mean_of_the_support():
    """`expected_q` computes the softmax's mean without its per-atom division: the same values
    as softmax · support up to rounding, so `greedy` picks the action that ranks first."""
    logits = 3.0 * jax.random.normal(jax.random.key(3), (256, 44, 51))
    support = jnp.linspace(-100.0, 100.0, 51)
    reference = jax.nn.softmax(logits, axis=-1) @ support
    np.testing.assert_allclose(expected_q(logits, support), reference, rtol=1e-5, atol=1e-4)
    picked = greedy(lambda params, obs: obs, None, logits, support)
    np.testing.assert_array_equal(picked, jnp.argmax(reference, axis=-1))
    # The rows' best two actions are far apart compared with float32 rounding, so the
    # comparison above is exact, not lucky.
    top2 = jnp.sort(reference, axis=-1)[:, -2:]
    assert float(jnp.min(top2[:, 1] - top2[:, 0])) > 1e-3
