"""n-step accumulator against a brute-force reference on random multi-stream episodes."""

import numpy as np
import pytest
from replay_streams import (
    Frame,
    emitted_transitions,
    frame_obs,
    push_tick,
    random_schedule,
    reference_transitions,
)

from tempest_jax.config import RewardConfig
from tempest_jax.replay import Emission, NStepAccumulator, scaled_reward


def run(acc, schedule):
    emissions = []
    for events in schedule:
        emissions += push_tick(acc, events)
    emissions.append(acc.truncate(np.arange(acc.num_streams)))
    return emissions


def assert_match(got: dict, want: dict):
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))[:5]
    for key, w in want.items():
        g = got[key]
        assert (g.next, g.action, g.expert, g.horizon, g.terminal) == \
               (w.next, w.action, w.expert, w.horizon, w.terminal), (key, g, w)
        assert g.ret == pytest.approx(w.ret, rel=1e-5, abs=1e-5), key
        assert g.discount == pytest.approx(w.discount, rel=1e-6), key


@pytest.mark.parametrize("n,gamma,cut,seed", [(12, 0.99, True, 0), (12, 0.99, False, 1),
                                               (3, 0.9, True, 2), (1, 0.5, False, 3),
                                               (5, 0.97, True, 4)])
def test_returns_match_brute_force(n, gamma, cut, seed):
    rng = np.random.default_rng(seed)
    schedule = random_schedule(rng, num_streams=7, ticks=300)
    acc = NStepAccumulator(7, n_step=n, gamma=gamma, cut_at_actor_change=cut, lookback=0)
    got, keys = emitted_transitions(run(acc, schedule))
    want = reference_transitions(schedule, n, gamma, cut)
    assert len(want) > 500
    assert any(w.terminal for w in want.values())
    assert any(w.horizon < n and not w.terminal for w in want.values()) or n == 1
    assert_match(got, want)
    # Serials are dense and every stored observation is used as a start or a successor.
    assert sorted(keys) == list(range(len(keys)))


def test_cut_at_actor_change_never_mixes_sources():
    rng = np.random.default_rng(5)
    schedule = random_schedule(rng, num_streams=4, ticks=400, p_switch=0.3)
    acc = NStepAccumulator(4, n_step=12, cut_at_actor_change=True, lookback=0)
    got, _ = emitted_transitions(run(acc, schedule))
    source = {(f.stream, f.t): f.expert for events in schedule for f in events
              if isinstance(f, Frame)}
    for (stream, t), g in got.items():
        # Actions t .. t+h-1 were all taken by the same actor.
        assert len({source[(stream, t + i)] for i in range(g.horizon)}) == 1


def test_ignored_frames_store_nothing():
    acc = NStepAccumulator(1, n_step=4, gamma=0.5, lookback=0)
    rows = [  # (applied, done, reward)
        (False, False, 9.0), (True, False, 9.0), (True, False, 1.0), (True, False, 2.0),
        (False, False, 100.0), (False, False, 100.0), (True, False, 7.0), (True, True, 3.0),
    ]
    emissions = [acc.push([0], frame_obs(0, t)[None], [t], [r], [d], [False], [a])
                 for t, (a, d, r) in enumerate(rows)]
    got, keys = emitted_transitions(emissions)
    stored_frames = sorted(t for _, t in keys.values())
    assert stored_frames == [1, 2, 3, 6, 7]  # never the ignored frames 0, 4, 5
    assert got[(0, 1)].next == (0, 3) and got[(0, 1)].ret == pytest.approx(1 + 0.5 * 2)
    assert got[(0, 1)].discount == pytest.approx(0.25)
    assert got[(0, 2)].next == (0, 3) and got[(0, 2)].horizon == 1
    assert got[(0, 6)].terminal and got[(0, 6)].discount == 0.0
    assert got[(0, 6)].ret == pytest.approx(3.0) and got[(0, 6)].next == (0, 7)
    assert (0, 3) not in got  # its step ran into an ignored frame: dropped


def test_disconnect_flushes_tail_bootstrapped():
    acc = NStepAccumulator(2, n_step=12, gamma=0.9, lookback=0)
    emissions = [acc.push([0, 1], np.stack([frame_obs(0, t), frame_obs(1, t)]), [1, 2],
                          [1.0, 1.0], [False, False], [False, False], [True, True])
                 for t in range(5)]
    assert (acc.pending([0, 1]) == 4).all()
    emissions.append(acc.truncate([1]))
    got, _ = emitted_transitions(emissions)
    assert sorted(t for s, t in got if s == 1) == [0, 1, 2, 3]
    assert not any(s == 0 for s, _ in got)
    assert got[(1, 0)].next == (1, 4) and not got[(1, 0)].terminal
    assert got[(1, 0)].discount == pytest.approx(0.9 ** 4)
    assert got[(1, 3)].ret == pytest.approx(1.0) and got[(1, 3)].horizon == 1
    assert (acc.pending([0, 1]) == [4, 0]).all()


def test_pre_death_boost_lists_last_transitions_of_the_stream():
    rng = np.random.default_rng(7)
    lookback = 5
    schedule = random_schedule(rng, num_streams=5, ticks=400, p_done=0.02)
    acc = NStepAccumulator(5, n_step=3, lookback=lookback)
    history = {s: [] for s in range(5)}
    boosts = 0
    for events in schedule:
        for e in push_tick(acc, events):
            for j in range(e.num_transitions):
                history[int(e.stream[j])].append(int(e.start[j]))
            dying = set(e.stream[e.terminal].tolist())
            expected = sorted(x for s in dying for x in history[s][-lookback:])
            assert sorted(e.boost.tolist()) == expected
            boosts += len(dying)
            for s in dying:
                history[s] = []
        for event in events:
            if not isinstance(event, Frame):  # a disconnect forgets the stream's history
                history[event[1]] = []
    assert boosts > 10


def test_concatenate_and_reset():
    acc = NStepAccumulator(2, n_step=2, lookback=0)
    parts = [acc.push([0, 1], np.stack([frame_obs(0, t), frame_obs(1, t)]), [0, 0],
                      [1.0, 2.0], [False, False], [False, True], [True, True])
             for t in range(4)]
    joined = Emission.concatenate(parts)
    assert joined.num_obs == sum(p.num_obs for p in parts)
    assert joined.num_transitions == sum(p.num_transitions for p in parts) == 4
    with pytest.raises(ValueError, match="consecutive"):
        Emission.concatenate([parts[1], parts[0]])
    acc.reset([0, 1])
    assert acc.truncate([0, 1]).num_transitions == 0
    with pytest.raises(ValueError, match="once"):
        acc.push([1, 1], np.zeros((2, 195)), [0, 0], [0, 0], [0, 0], [0, 0], [1, 1])


def test_scaled_reward_clips():
    cfg = RewardConfig(obj_scale=0.01, subj_scale=0.005, clip=10.0)
    got = scaled_reward(np.array([100.0, -5000.0, 2000.0]), np.array([2.0, 0.0, 0.0]), cfg)
    np.testing.assert_allclose(got, [1.01, -10.0, 10.0])
