"""Replay snapshots: exact round trip, capacity change, save during inserts, corrupt input,
checksums, and cleaning up after a save that was killed."""

import json
import threading

import numpy as np
import pytest
from replay_streams import obs_key, push_tick, random_schedule, reference_transitions

from tempest_jax.config import ReplayConfig
from tempest_jax.replay import (
    NStepAccumulator,
    ReplayBuffer,
    ReplaySnapshotError,
    load_snapshot,
    save_snapshot,
)
from tempest_jax.replay.snapshot import prune_snapshots, remove_partial_snapshots, snapshot_steps


def build(capacity=300, ticks=300, seed=0):
    rng = np.random.default_rng(seed)
    schedule = random_schedule(rng, num_streams=5, ticks=ticks)
    buffer = ReplayBuffer(capacity, alpha=0.6)
    acc = NStepAccumulator(5, first_serial=buffer.obs_written)
    for events in schedule:
        for emission in push_tick(acc, events):
            buffer.add(emission)
    batch = buffer.sample(64, 0.5, rng)
    buffer.update_priorities(batch.index, rng.random(64))
    return buffer, reference_transitions(schedule, 12, 0.99, True)


def assert_all_transitions_valid(buffer, want):
    live = np.flatnonzero(buffer.tree.leaves > 0)
    assert live.size == len(buffer) > 0
    for slot in live:
        w = want[obs_key(buffer.obs[slot])]
        assert obs_key(buffer.obs[buffer.next_slot[slot]]) == w.next
        assert buffer.ret[slot] == pytest.approx(w.ret, rel=1e-5, abs=1e-5)


def test_round_trip_is_exact(tmp_path):
    buffer, _ = build()
    assert buffer.obs_written > buffer.capacity  # the ring has wrapped
    save_snapshot(buffer, tmp_path / "replay")
    loaded = load_snapshot(tmp_path / "replay")
    for name in ReplayBuffer.FIELDS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(buffer, name))
    for a, b in zip(loaded.tree.levels, buffer.tree.levels):
        np.testing.assert_array_equal(a, b)
    assert loaded.stats() == buffer.stats() | {"added": 0, "dropped_stale": 0}
    assert loaded.params() == buffer.params()
    a = buffer.sample_many(3, 32, 0.5, np.random.default_rng(9))
    b = loaded.sample_many(3, 32, 0.5, np.random.default_rng(9))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Saving again over the same directory replaces it.
    save_snapshot(buffer, tmp_path / "replay")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay"]


@pytest.mark.parametrize("capacity", [1000, 5000])
def test_load_into_other_capacity_keeps_recent_transitions(tmp_path, capacity):
    buffer, want = build(capacity=2500, ticks=1000)
    assert buffer.obs_written > buffer.capacity
    save_snapshot(buffer, tmp_path / "replay")
    loaded = load_snapshot(tmp_path / "replay", ReplayConfig(capacity=capacity))
    assert loaded.capacity == capacity and loaded.obs_written == buffer.obs_written
    assert_all_transitions_valid(loaded, want)
    if capacity < buffer.capacity:  # only the newest serials remain
        assert 0 < len(loaded) < len(buffer)
    else:
        assert len(loaded) == len(buffer)
    batch = loaded.sample(32, 0.5, np.random.default_rng(0))
    assert (batch.index >= loaded.obs_written - min(capacity, buffer.capacity)).all()


def test_save_during_inserts_is_consistent(tmp_path):
    rng = np.random.default_rng(3)
    schedule = random_schedule(rng, num_streams=8, ticks=3000)
    want = reference_transitions(schedule, 12, 0.99, True)
    buffer = ReplayBuffer(2000)
    acc = NStepAccumulator(8)
    for events in schedule[:500]:
        for emission in push_tick(acc, events):
            buffer.add(emission)

    def writer():
        for events in schedule[500:]:
            for emission in push_tick(acc, events):
                buffer.add(emission)

    thread = threading.Thread(target=writer)
    thread.start()
    saves = kept = 0
    while thread.is_alive() and saves < 10:
        save_snapshot(buffer, tmp_path / "replay")
        loaded = load_snapshot(tmp_path / "replay")
        if len(loaded):  # the writer may have lapped a whole ring during a slow save
            assert_all_transitions_valid(loaded, want)
        kept += len(loaded)
        saves += 1
    thread.join()
    assert saves >= 2 and kept > 0


@pytest.fixture()
def snapshot_dir(tmp_path):
    buffer, _ = build(capacity=200, ticks=100)
    return save_snapshot(buffer, tmp_path / "replay")


def test_truncated_file_is_rejected(snapshot_dir):
    path = snapshot_dir / "obs.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplaySnapshotError, match="truncated"):
        load_snapshot(snapshot_dir)


def test_flipped_byte_fails_the_checksum(snapshot_dir):
    path = snapshot_dir / "discount.npy"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ReplaySnapshotError, match="discount.npy: CRC-32 differs"):
        load_snapshot(snapshot_dir)


def test_missing_or_corrupt_manifest_is_rejected(snapshot_dir, tmp_path):
    with pytest.raises(ReplaySnapshotError, match="manifest"):
        load_snapshot(tmp_path / "nowhere")
    (snapshot_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ReplaySnapshotError, match="unreadable"):
        load_snapshot(snapshot_dir)


def test_mismatched_shape_or_header_is_rejected(snapshot_dir):
    manifest_path = snapshot_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    bad = json.loads(json.dumps(manifest))
    bad["rows"] += 1
    manifest_path.write_text(json.dumps(bad))
    with pytest.raises(ReplaySnapshotError, match="inconsistent"):
        load_snapshot(snapshot_dir)
    # A same-size file of the wrong dtype: header and manifest disagree.
    manifest_path.write_text(json.dumps(manifest))
    original = (snapshot_dir / "action.npy").read_bytes()
    action = np.load(snapshot_dir / "action.npy")
    np.save(snapshot_dir / "action.npy", action.view(np.int8))
    with pytest.raises(ReplaySnapshotError, match="action"):
        load_snapshot(snapshot_dir)
    (snapshot_dir / "action.npy").write_bytes(original)
    with pytest.raises(ReplaySnapshotError, match="expected 100"):
        load_snapshot(snapshot_dir, obs_size=100)
    load_snapshot(snapshot_dir)  # intact again


def test_garbage_header_is_rejected(snapshot_dir):
    path = snapshot_dir / "ret.npy"
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)
    with pytest.raises(ReplaySnapshotError, match="ret"):
        load_snapshot(snapshot_dir)


def test_partial_saves_are_cleaned_up_and_an_interrupted_replacement_put_back(tmp_path):
    buffer, _ = build(capacity=200, ticks=100)
    root = tmp_path / "replay"
    save_snapshot(buffer, root / "7")
    (root / ".8.tmp-abc").mkdir()  # killed while writing snapshot 8
    moved = root / ".7.old-xyz"  # killed between moving 7 aside and renaming its replacement
    moved.mkdir()
    (root / "7").rename(moved / "7")
    assert remove_partial_snapshots(root) == [root / ".7.old-xyz", root / ".8.tmp-abc"]
    assert sorted(p.name for p in root.iterdir()) == ["7"]
    load_snapshot(root / "7")


def test_prune_keeps_the_newest_paired_snapshot_and_newer_ones(tmp_path):
    buffer, _ = build(capacity=200, ticks=50)
    root = tmp_path / "replay"
    for step in (1, 2, 3, 4):
        save_snapshot(buffer, root / str(step), checkpoint_step=step)
    prune_snapshots(root, checkpoint_steps=[1, 2, 3])  # 4's checkpoint is still being written
    assert snapshot_steps(root) == [3, 4]
    assert load_snapshot(root / "4", checkpoint_step=4).obs_written == buffer.obs_written
    with pytest.raises(ReplaySnapshotError, match="saved for checkpoint 4, not 3"):
        load_snapshot(root / "4", checkpoint_step=3)
