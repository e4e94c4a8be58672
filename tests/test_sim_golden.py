"""The simulator replays the golden trajectories (tests/sim_golden.py) bit for bit: every RAM
image and every frame of eight seeded games, 3,000 ticks each, expert and random actions."""

from __future__ import annotations

import numpy as np
import pytest
from sim_golden import GOLDEN_PATH, coverage, digests, record

from tempest_jax.sim import ram_map as M

pytestmark = pytest.mark.timeout(600)

ADDRESS_NAMES = {v: k for k, v in vars(M).items()
                 if k.isupper() and isinstance(v, int) and k not in ("RAM_SIZE", "NUM_PENDING")}


def _address(addr: int) -> str:
    base = max(a for a in ADDRESS_NAMES if a <= addr)
    name = ADDRESS_NAMES[base]
    return f"{addr:#06x} ({name}{'' if base == addr else f'+{addr - base}'})"


@pytest.fixture(scope="module")
def replay():
    images, fields = record()
    return images, fields, np.load(GOLDEN_PATH)


def test_recording_covers_the_game(replay):
    _, fields, _ = replay
    seen = coverage(fields)
    assert seen["deaths"] >= 20
    assert seen["game_overs"] >= 5
    assert seen["zoom_ticks"] >= 100
    assert seen["level_changes"] >= 5
    assert seen["open_ticks"] >= 3000
    assert seen["max_level"] >= 49


def test_checkpoint_ram_images_and_states_match(replay):
    images, fields, golden = replay
    ticks = golden["checkpoint_ticks"]
    for g in range(images.shape[0]):
        for i, t in enumerate(ticks):
            diff = np.flatnonzero(images[g, t] != golden["checkpoint_ram"][g, i])
            assert diff.size == 0, (f"game {g} tick {t}: RAM differs at "
                                    + ", ".join(_address(int(a)) for a in diff[:8]))
            ours = fields["state"][g, t].view(np.uint32)
            theirs = golden["checkpoint_state"][g, i].view(np.uint32)
            assert np.array_equal(ours, theirs), (
                f"game {g} tick {t}: state values differ at {np.flatnonzero(ours != theirs)}")


def test_every_tick_replays_bit_identically(replay):
    images, fields, golden = replay
    ram, frame = digests(images, fields)
    for name, ours, theirs in (("RAM image", ram, golden["ram_digest"]),
                               ("frame", frame, golden["frame_digest"])):
        assert ours.shape == theirs.shape
        bad = np.argwhere(ours != theirs)
        assert bad.size == 0, (f"{name} differs first at game {bad[0][0]} tick {bad[0][1]} "
                               f"({len(bad)} of {ours.size} ticks differ)")
