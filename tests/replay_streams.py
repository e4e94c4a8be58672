"""Test helpers for replay: random multi-stream frame schedules and a brute-force n-step
reference written independently of the vectorized accumulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tempest_jax.features import STATE_SIZE


def frame_obs(stream: int, t: int, obs_size: int = STATE_SIZE) -> np.ndarray:
    """An observation that names its frame: (stream, t // 1024, t % 1024) in float16-exact
    integers, then filler."""
    obs = np.full(obs_size, 0.5, dtype=np.float32)
    obs[:3] = stream, t // 1024, t % 1024
    return obs


def obs_key(obs) -> tuple[int, int]:
    obs = np.asarray(obs, dtype=np.float64)
    return int(obs[0]), int(obs[1]) * 1024 + int(obs[2])


@dataclass(frozen=True)
class Frame:
    stream: int
    t: int
    action: int
    reward: float
    done: bool
    expert: bool
    applied: bool


def random_schedule(rng: np.random.Generator, num_streams: int, ticks: int, *,
                    p_done=0.03, p_ignored=0.06, p_switch=0.15, p_disconnect=0.01, p_idle=0.2,
                    idle_streams: dict[int, range] | None = None) -> list[list]:
    """Per tick, a list of events: Frame(...) or ("disconnect", stream). A stream sends at most
    one frame per tick; ignored frames come in short runs, like a death animation."""
    expert = rng.random(num_streams) < 0.5
    ignoring = np.zeros(num_streams, dtype=int)
    t = np.zeros(num_streams, dtype=int)
    schedule = []
    for tick in range(ticks):
        events = []
        for s in range(num_streams):
            if idle_streams and s in idle_streams and tick in idle_streams[s]:
                continue
            if rng.random() < p_idle:
                continue
            if rng.random() < p_disconnect:
                events.append(("disconnect", s))
                continue
            if ignoring[s] == 0 and rng.random() < p_ignored:
                ignoring[s] = rng.integers(1, 6)
            applied = ignoring[s] == 0
            ignoring[s] = max(0, ignoring[s] - 1)
            if rng.random() < p_switch:
                expert[s] = ~expert[s]
            events.append(Frame(s, int(t[s]), int(rng.integers(0, 44)),
                                float(np.round(rng.normal(), 3)), bool(rng.random() < p_done),
                                bool(expert[s]), bool(applied)))
            t[s] += 1
        schedule.append(events)
    return schedule


def push_tick(acc, events, obs_size: int = STATE_SIZE) -> list:
    """Feed one tick's events to an accumulator; returns its emissions in order."""
    frames = [e for e in events if isinstance(e, Frame)]
    emissions = []
    if frames:
        emissions.append(acc.push(
            [f.stream for f in frames],
            np.stack([frame_obs(f.stream, f.t, obs_size) for f in frames]),
            [f.action for f in frames], [f.reward for f in frames], [f.done for f in frames],
            [f.expert for f in frames], [f.applied for f in frames]))
    gone = [e[1] for e in events if not isinstance(e, Frame)]
    if gone:
        emissions.append(acc.truncate(gone))
    return emissions


@dataclass(frozen=True)
class Expected:
    next: tuple[int, int]
    action: int
    ret: float
    discount: float
    expert: bool
    horizon: int
    terminal: bool


def reference_transitions(schedule, n: int, gamma: float, cut: bool) -> dict:
    """Brute force: split each stream's frames into chains, then form every transition of a
    chain from its definition. Chains still open at the end count as truncated there.
    Returns {start key: Expected}."""
    chains: dict[int, list[Frame]] = {}
    closed: list[tuple[list[Frame], bool]] = []
    for events in schedule:
        for event in events:
            if not isinstance(event, Frame):
                s = event[1]
                if chains.get(s):
                    closed.append((chains.pop(s), False))
                chains.pop(s, None)
                continue
            f, chain = event, chains.get(event.stream)
            if chain:
                if f.done:
                    closed.append(([*chain, f], True))
                    chains.pop(f.stream)
                    continue
                if not f.applied:
                    closed.append((chain, False))
                    chains.pop(f.stream)
                    continue
                if cut and f.expert != chain[-1].expert:
                    closed.append(([*chain, f], False))
                    chains[f.stream] = [f]
                    continue
                chain.append(f)
            elif f.applied and not f.done:
                chains[f.stream] = [f]
    closed.extend((chain, False) for chain in chains.values() if chain)  # still pending

    expected = {}
    for chain, terminal in closed:
        length = len(chain) - 1
        for j in range(length):
            h = min(n, length - j)
            ret = sum(gamma ** i * chain[j + i + 1].reward for i in range(h))
            ends_terminal = terminal and j + h == length
            expected[(chain[j].stream, chain[j].t)] = Expected(
                (chain[j + h].stream, chain[j + h].t), chain[j].action, ret,
                0.0 if ends_terminal else gamma ** h, chain[j].expert, h, ends_terminal)
    return expected


def emitted_transitions(emissions):
    """({start key: Expected} from the emissions, {serial: frame key} of stored obs)."""
    keys = {}
    for e in emissions:
        for i, row in enumerate(e.obs):
            keys[e.first_serial + i] = obs_key(row)
    out = {}
    for e in emissions:
        for j in range(e.num_transitions):
            start = keys[int(e.start[j])]
            assert start not in out, f"transition from {start} emitted twice"
            out[start] = Expected(keys[int(e.next[j])], int(e.action[j]), float(e.ret[j]),
                                  float(e.discount[j]), bool(e.is_expert[j]),
                                  int(e.horizon[j]), bool(e.terminal[j]))
    return out, keys
