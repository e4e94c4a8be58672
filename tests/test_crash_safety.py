"""Crash safety: a resume finds the newest complete checkpoint (and replay snapshot) whatever a
kill left behind, reports every torn one and moves it out of the way.

The unit tests fabricate the damage (an interrupted save, a missing commit marker, a truncated
array file, a corrupt or unfinished replay snapshot). The kill test SIGKILLs real training runs
at seeded random moments, some of them while a checkpoint or a replay snapshot is being written,
and resumes after each kill.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from learner_testing import TableNetwork
from replay_streams import push_tick, random_schedule
from run_harness import TrainProcess

from tempest_jax.checkpoint import Checkpointer
from tempest_jax.config import load_config
from tempest_jax.evaluate import restore_checkpoint
from tempest_jax.learner import make_learner
from tempest_jax.replay import NStepAccumulator, ReplayBuffer, save_snapshot
from tempest_jax.resume import find_resume_point

OBS, ACTIONS = 8, 4
STEPS = (10, 20, 30, 40)


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("smoke", ["replay.snapshot=true"])
    learner = make_learner(cfg, TableNetwork(ACTIONS, cfg.network.num_atoms), obs_size=OBS,
                           num_actions=ACTIONS)
    return cfg, learner


def small_buffer(seed: int) -> ReplayBuffer:
    buffer = ReplayBuffer(300)
    acc = NStepAccumulator(3, first_serial=buffer.obs_written)
    for events in random_schedule(np.random.default_rng(seed), num_streams=3, ticks=100):
        for emission in push_tick(acc, events):
            buffer.add(emission)
    return buffer


def fabricate_run(tmp_path: Path, setup) -> tuple[Path, Path, dict[int, ReplayBuffer]]:
    """Complete checkpoints and replay snapshots at STEPS."""
    cfg, learner = setup
    checkpoints, snapshots = tmp_path / "checkpoints", tmp_path / "replay"
    ckpt = Checkpointer(checkpoints, keep=len(STEPS) + 1)
    buffers = {}
    for step in STEPS:
        state = learner.init(jax.random.key(step))
        ckpt.save(step, learner, state, {"frames": step * 100}, cfg, rng=jax.random.key(step))
        buffers[step] = small_buffer(step)
        save_snapshot(buffers[step], snapshots / str(step), checkpoint_step=step)
    ckpt.wait()
    ckpt.close()
    return checkpoints, snapshots, buffers


def largest_file(directory: Path) -> Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def damage(checkpoints: Path, snapshots: Path) -> None:
    """What kills and bad disks leave: an interrupted save of step 50 and an unfinished
    snapshot, 40 without its commit marker, 30 with a truncated array file, 20 with a
    corrupt snapshot. Only 10 is whole."""
    interrupted = checkpoints / "50.orbax-checkpoint-tmp"
    (interrupted / "state").mkdir(parents=True)
    (interrupted / "state" / "_METADATA").write_text("{")
    (snapshots / ".50.tmp-k1ll3d").mkdir()
    (snapshots / ".50.tmp-k1ll3d" / "obs.npy").write_bytes(b"\x93NUMPY")
    (checkpoints / "40" / "commit_success.txt").unlink()
    array_file = largest_file(checkpoints / "30" / "state")
    array_file.write_bytes(array_file.read_bytes()[: array_file.stat().st_size // 2])
    obs = snapshots / "20" / "obs.npy"
    data = bytearray(obs.read_bytes())
    data[-1] ^= 0xFF
    obs.write_bytes(bytes(data))


def assert_same_transitions(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert a.obs_written == b.obs_written and len(a) == len(b)
    rows = min(a.obs_written, a.capacity, b.capacity)
    np.testing.assert_array_equal(a.obs[:rows], b.obs[:rows])
    np.testing.assert_array_equal(a.tree.leaves[:rows], b.tree.leaves[:rows])


def test_resume_skips_every_torn_checkpoint_and_snapshot(setup, tmp_path, caplog):
    cfg, learner = setup
    checkpoints, snapshots, buffers = fabricate_run(tmp_path, setup)
    damage(checkpoints, snapshots)

    ckpt = Checkpointer(checkpoints, keep=len(STEPS) + 1)
    with caplog.at_level(logging.WARNING):
        found = find_resume_point(ckpt, learner, cfg, snapshots)
    assert found.restored.step == 10 and found.restored.counters == {"frames": 1000}
    assert_same_transitions(found.replay, buffers[10])

    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert f"removed {checkpoints / '50.orbax-checkpoint-tmp'}" in warnings
    assert f"removed {snapshots / '.50.tmp-k1ll3d'}" in warnings
    assert re.search(r"checkpoint 40 .*no commit_success\.txt.*moved it to 40\.torn-", warnings)
    assert re.search(r"checkpoint 30 .*does not restore.*moved it to 30\.torn-", warnings)
    assert re.search(r"checkpoint 20 .*replay snapshot.*obs\.npy: CRC-32 differs", warnings)
    assert re.search(r"replay snapshot .*/20 is newer than the resumed checkpoint 10", warnings)

    # Orbax sees only step 10 now; the torn steps are beside it under other names.
    assert ckpt.all_steps() == [10]
    assert sorted(p.name.split(".")[0] for p in checkpoints.iterdir()) == ["10", "20", "30", "40"]
    assert sorted(p.name for p in snapshots.iterdir() if p.name.isdigit()) == ["10"]
    # The resumed run saves the steps that were set aside again, and keep-N is not confused.
    state = learner.init(jax.random.key(0))
    for step in (20, 30, 40, 50, 60, 70):
        ckpt.save(step, learner, state, {"frames": step}, cfg)
    ckpt.wait()
    assert ckpt.all_steps() == [30, 40, 50, 60, 70]
    ckpt.close()


def test_without_snapshots_the_newest_restorable_checkpoint_wins(setup, tmp_path):
    cfg, learner = setup
    checkpoints, snapshots, _ = fabricate_run(tmp_path, setup)
    damage(checkpoints, snapshots)
    ckpt = Checkpointer(checkpoints)
    found = find_resume_point(ckpt, learner, cfg.replace(replay={"snapshot": False}), None)
    assert found.restored.step == 20 and found.replay is None
    assert ckpt.all_steps() == [10, 20]
    ckpt.close()


def test_no_usable_snapshot_resumes_the_newest_checkpoint_with_empty_replay(setup, tmp_path,
                                                                             caplog):
    cfg, learner = setup
    checkpoints, snapshots, _ = fabricate_run(tmp_path, setup)
    for step in STEPS:
        (snapshots / str(step) / "manifest.json").unlink()
    ckpt = Checkpointer(checkpoints)
    with caplog.at_level(logging.WARNING):
        found = find_resume_point(ckpt, learner, cfg, snapshots)
    assert found.restored.step == 40 and found.replay is None
    assert "no checkpoint in" in caplog.text and "with an empty replay" in caplog.text
    assert ckpt.all_steps() == list(STEPS)
    ckpt.close()


def test_snapshot_for_another_checkpoint_is_refused(setup, tmp_path, caplog):
    cfg, learner = setup
    checkpoints, snapshots, _ = fabricate_run(tmp_path, setup)
    (snapshots / "40").rename(snapshots / "40.x")
    (snapshots / "30").rename(snapshots / "40")
    ckpt = Checkpointer(checkpoints, keep=len(STEPS) + 1)
    with caplog.at_level(logging.WARNING):
        found = find_resume_point(ckpt, learner, cfg, snapshots)
    assert found.restored.step == 20  # 40's snapshot is 30's, and 30 has none
    assert "saved for checkpoint 30, not 40" in caplog.text
    ckpt.close()


# -- the kill test ------------------------------------------------------------------------------

KILL_SEED = 10
# Where each round's SIGKILL lands: as soon as a checkpoint save or a replay snapshot has its
# temporary directory (so mid-write; after letting 0-2 such saves finish), or at a random moment
# of training.
KILL_MOMENTS = ("checkpoint", "snapshot", "random", "checkpoint")
RESUMED = re.compile(r"resumed \S+ at checkpoint (\d+): (\d+) frames, \d+ updates, (.*)")


def entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def saving(run: Path, moment: str) -> list[Path]:
    """Temporary directories of saves in progress."""
    if moment == "checkpoint":
        return [p for p in entries(run / "checkpoints") if ".orbax-checkpoint-tmp" in p.name]
    return [p for p in entries(run / "replay") if ".tmp-" in p.name]


def expected_resume(run: Path) -> tuple[int | None, bool]:
    """The step a correct resume picks and whether with its replay, judged from the files
    alone: committed step directories appear by rename, so after a kill they are whole; the
    newest one with a snapshot wins, else the newest one (with an empty replay)."""
    committed = {int(p.name) for p in entries(run / "checkpoints") if p.name.isdigit()}
    paired = committed & {int(p.name) for p in entries(run / "replay") if p.name.isdigit()}
    return max(paired or committed, default=None), bool(paired)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_always_resumes_the_last_complete_checkpoint(tmp_path):
    rng = np.random.default_rng(KILL_SEED)
    run = tmp_path / "runs" / "kill"
    first = ["--config", "smoke", "--set", f"run.dir={tmp_path / 'runs'}", "--set",
             "run.name=kill", "--set", "run.checkpoint_interval_s=1", "--set",
             "replay.snapshot=true", "--set", "replay.min_size=64", "--set",
             "run.total_frames=0", "--set", "run.log_interval_s=0.5"]
    resume = ["--resume", str(run)]
    process = TrainProcess(first)
    try:
        frames = 0
        interrupted_saves = 0
        for index, moment in enumerate(KILL_MOMENTS, start=1):
            if moment == "random":
                time.sleep(rng.uniform(0.0, 2.0))
            else:
                seen: set[str] = set()
                skip = int(rng.integers(0, 3))
                while len(seen) <= skip:
                    assert process.proc.poll() is None, f"train exited early:\n{process.text}"
                    time.sleep(0.002)
                    seen.update(p.name for p in saving(run, moment))
                time.sleep(rng.uniform(0.0, 0.02))  # somewhere inside the write
            process.close()  # SIGKILL
            left = saving(run, "checkpoint") + saving(run, "snapshot")
            interrupted_saves += bool(left)
            want, with_replay = expected_resume(run)

            process = TrainProcess(resume)
            if want is None:  # killed before its first checkpoint: starts afresh
                process.wait_for(r"checkpoint \d+ started")
                continue
            resumed = process.wait_for(RESUMED.pattern)
            assert int(resumed[1]) == want, f"round {index} ({moment}):\n{process.text}"
            assert (resumed[3] != "empty replay") == with_replay, resumed[0]
            assert int(resumed[2]) >= frames
            frames = int(resumed[2])
            for path in left:  # every interrupted save is reported (and cleared away)
                process.wait_for(re.escape(f"removed {path}"))
        process.close()
        want, with_replay = expected_resume(run)
        process = TrainProcess([*resume, "--frames", "2000"])
        assert process.wait() == 0, process.text
        resumed = RESUMED.search(process.text)
        assert resumed and int(resumed[1]) == want and int(resumed[2]) >= frames
        assert (resumed[3] != "empty replay") == with_replay
        assert interrupted_saves >= 1  # at least one kill landed inside a save
    finally:
        process.close()


def test_eval_restores_the_newest_complete_checkpoint_and_touches_nothing(tmp_path, caplog):
    """`tempest-jax eval` reads runs that a crash left torn, maybe beside a training job that
    is still writing: it skips and reports the torn steps and leaves every file as it is."""
    cfg = load_config("smoke")
    learner = make_learner(cfg)
    checkpoints = tmp_path / "checkpoints"
    ckpt = Checkpointer(checkpoints, keep=3)
    for step in (10, 20, 30):
        ckpt.save(step, learner, learner.init(jax.random.key(step)), {"frames": step}, cfg)
    ckpt.wait()
    ckpt.close()
    (checkpoints / "30" / "commit_success.txt").unlink()
    array_file = largest_file(checkpoints / "20" / "state")
    array_file.write_bytes(array_file.read_bytes()[: array_file.stat().st_size // 2])
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    with caplog.at_level(logging.WARNING):
        _, restored = restore_checkpoint(tmp_path)
    assert restored.step == 10 and restored.counters == {"frames": 10}
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert re.search(r"checkpoint 30 .*no commit_success\.txt.*left it in place", warnings)
    assert re.search(r"checkpoint 20 .*does not restore.*left it in place", warnings)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before

    (checkpoints / "10" / "commit_success.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        restore_checkpoint(tmp_path)
