"""Choosing where a resumed run starts: the newest complete checkpoint (and replay snapshot).

A run killed at any moment (SIGKILL, power cut, OOM) may leave an interrupted checkpoint save, a
committed step that is missing parts or does not restore, or a replay snapshot that was never
finished or does not match its checksums. `find_resume_point` walks the checkpoints newest to
oldest and takes the first one that restores; with replay snapshots on, the first one whose
snapshot also loads, so the learner and its replay come from the same moment. If no checkpoint
has a usable snapshot, it resumes the newest complete checkpoint with an empty replay.

Everything newer than the chosen checkpoint is reported and moved aside as `<step>.torn-<time>`
(it would otherwise hide the steps the resumed run saves next, and be chosen again by the next
resume); interrupted temporary directories are deleted. Checkpoints older than the chosen one
are left as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from tempest_jax import distributed
from tempest_jax.checkpoint import Checkpointer, CheckpointMismatchError, Restored, torn_path
from tempest_jax.config import Config
from tempest_jax.learner import Learner
from tempest_jax.replay import ReplayBuffer, ReplaySnapshotError, load_snapshot
from tempest_jax.replay.snapshot import prune_snapshots, remove_partial_snapshots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    restored: Restored
    replay: ReplayBuffer | None  # None: snapshots are off, or none was usable


def _restore(checkpointer: Checkpointer, learner: Learner, cfg: Config,
             step: int) -> tuple[Restored | None, str | None]:
    """The restored step, or None and why it is torn. A network mismatch is the user's to
    fix, not a torn checkpoint: it propagates."""
    missing = checkpointer.missing_parts(step)
    if missing:
        return None, missing
    try:
        return checkpointer.restore(learner, cfg, step), None
    except CheckpointMismatchError:
        raise
    except Exception as e:  # tensorstore, JSON and file errors all mean a damaged step
        first_line = (str(e).splitlines() or [""])[0]  # tensorstore appends a whole spec
        return None, f"does not restore: {type(e).__name__}: {first_line[:200]}"


def find_resume_point(checkpointer: Checkpointer, learner: Learner, cfg: Config,
                      snapshots: Path | None, repair: bool = True) -> ResumePoint | None:
    """Restore the newest complete checkpoint in `checkpointer` (with its replay snapshot from
    `snapshots`, if given), after clearing torn ones out of the way. None if there is none.

    Without `repair` (the other processes of a multi-process run, where one repairs; `eval`,
    which may read beside a running training job) torn checkpoints are skipped and reported
    but no file is touched."""
    if repair:
        checkpointer.remove_interrupted_saves()
    if repair and snapshots is not None:
        for path in remove_partial_snapshots(snapshots):
            log.warning("removed %s: a replay snapshot that was interrupted while being written",
                        path)
    newer: list[tuple[int, str]] = []  # skipped steps, newest first, to move aside
    fallback: Restored | None = None
    chosen: ResumePoint | None = None
    for step in sorted(checkpointer.all_steps(), reverse=True):
        restored, reason = _restore(checkpointer, learner, cfg, step)
        if restored is None:
            newer.append((step, reason))
            continue
        if snapshots is None:
            chosen = ResumePoint(restored, None)
            break
        try:
            replay = load_snapshot(snapshots / str(step), cfg.replay, checkpoint_step=step)
        except ReplaySnapshotError as e:
            log.warning("checkpoint %d has no usable replay snapshot (%s); looking for an older "
                        "checkpoint that has one", step, e)
            fallback = fallback or restored
            newer.append((step, f"its replay snapshot is missing or torn: {e}"))
            continue
        chosen = ResumePoint(restored, replay)
        break
    if chosen is None and fallback is not None:
        log.warning("no checkpoint in %s has a usable replay snapshot; resuming checkpoint %d "
                    "with an empty replay", checkpointer.directory, fallback.step)
        chosen = ResumePoint(fallback, None)
    if chosen is None:
        log.warning("no complete checkpoint in %s", checkpointer.directory)
    if not repair:
        for step, reason in newer:
            if chosen is None or step > chosen.restored.step:
                log.warning("checkpoint %d in %s is torn (%s); skipped it, left it in place",
                            step, checkpointer.directory, reason)
        return chosen
    for step, reason in newer:
        if chosen is None or step > chosen.restored.step:
            checkpointer.set_aside(step, reason)
    if snapshots is not None and snapshots.is_dir():
        _set_aside_newer_snapshots(snapshots, chosen.restored.step if chosen else -1)
        prune_snapshots(snapshots, checkpointer.steps_on_disk())
    return chosen


def _set_aside_newer_snapshots(snapshots: Path, step: int) -> None:
    """Snapshots newer than the resumed checkpoint (all of them for a fresh start) belong to
    steps that were moved aside or never committed; the resumed run may save those step numbers
    again."""
    for path in sorted(snapshots.iterdir()):
        if path.name.isdigit() and int(path.name) > step:
            target = torn_path(path)
            path.rename(target)
            log.warning("replay snapshot %s is newer than the resumed checkpoint %d; moved it to "
                        "%s", path, step, target.name)


@dataclass(frozen=True)
class StartPoint:
    """Where a run starts: fresh, or from its newest complete checkpoint. With several
    processes the learner state is the same everywhere while the run's frames and transitions
    (run-wide sums) are split over the processes, whose counts add up again at every agreement;
    each process acts and samples with its own key."""

    train_state: Any
    key: jax.Array
    local_frames: int           # this process's share of the run's frames
    peer_frames: int            # the other processes' shares
    updates: int
    pulse_until: int
    transitions: int            # this process's share of the transitions ever stored
    replay: ReplayBuffer | None
    checkpoint: tuple[int, int] | None  # (step, run frames) of the checkpoint resumed


def start_point(checkpointer: Checkpointer, learner: Learner, cfg: Config, run_path: Path,
                snapshots: Path | None, resume: bool, repair: bool) -> StartPoint:
    key = jax.random.key(cfg.learner.seed)
    found = find_resume_point(checkpointer, learner, cfg, snapshots, repair) if resume else None
    if found is None:
        if resume:
            log.warning("nothing to resume in %s; starting from scratch", run_path)
        key, init_key = jax.random.split(key)
        state, counters, replay, checkpoint = learner.init(init_key), {}, None, None
    else:
        restored, replay = found.restored, found.replay
        state, counters = restored.train_state, restored.counters
        key = restored.rng if restored.rng is not None else key
        checkpoint = (restored.step, int(counters.get("frames", 0)))
        log.info("resumed %s at checkpoint %d: %d frames, %d updates, %s", run_path,
                 restored.step, counters.get("frames", 0), counters.get("updates", 0),
                 "empty replay" if replay is None else f"{len(replay)} transitions in replay")
    frames, transitions = int(counters.get("frames", 0)), int(counters.get("transitions", 0))
    index, count = jax.process_index(), jax.process_count()
    local_frames = distributed.process_share(frames, index, count)
    if index > 0:
        key = jax.random.fold_in(key, index)
    return StartPoint(state, key, local_frames, frames - local_frames,
                      int(counters.get("updates", 0)), int(counters.get("pulse_until", 0)),
                      distributed.process_share(transitions, index, count), replay, checkpoint)
