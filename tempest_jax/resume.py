"""Where a run starts: fresh, its newest complete checkpoint (and replay snapshot), or fresh
with another run's network.

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

A new run may instead start its network from another run's checkpoint (`run.init_from`,
`train --init-from RUN_DIR[:best|latest|STEP]`, see `initialised_state`): only the network (and,
with `run.init_optimizer`, the optimizer state) comes from there; its counters, key, schedules
and replay start anew from its own config.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from tempest_jax import distributed
from tempest_jax.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    Restored,
    shape_mismatches,
    torn_path,
)
from tempest_jax.config import Config, ConfigError
from tempest_jax.learner import Learner, TrainState, make_learner
from tempest_jax.replay import ReplayBuffer, ReplaySnapshotError, load_snapshot
from tempest_jax.replay.snapshot import prune_snapshots, remove_partial_snapshots
from tempest_jax.rundir import checkpoint_dir

log = logging.getLogger(__name__)
# Where a run's best checkpoint is looked for: `RUN_DIR/checkpoints/best`, a checkpoints
# directory of its own; `run.init_from = RUN_DIR:best` takes its newest complete step.
BEST_DIR = "best"
INIT_FROM_FORM = "RUN_DIR[:best|latest|STEP]"


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


def saved_run_config(checkpointer: Checkpointer, step: int | None = None) -> Config:
    """The config checkpoint `step` was saved with; None: the newest step whose config reads (a
    torn step's may not). FileNotFoundError if there is none."""
    steps = sorted(checkpointer.all_steps(), reverse=True)
    if step is not None and step not in steps:
        raise FileNotFoundError(f"no checkpoint {step} in {checkpointer.directory} (its "
                                f"checkpoints: {', '.join(map(str, steps[::-1])) or 'none'})")
    for candidate in [step] if step is not None else steps:
        with contextlib.suppress(Exception):  # a torn step's config; restoring reports it
            return checkpointer.saved_config(candidate)
    raise FileNotFoundError(f"checkpoint {step} in {checkpointer.directory} is torn: its config "
                            "does not read" if step is not None
                            else f"no complete checkpoint in {checkpointer.directory}")


def restore_run(checkpoints: Path, step: int | None = None,
                batch_size: int | None = None) -> tuple[Learner, Restored]:
    """A learner for the config a run's `checkpoints` were saved with, and checkpoint `step`
    restored onto it (None: the newest complete one). Torn checkpoints are skipped and reported,
    and left as they are: a training job may be writing beside the reader. `batch_size`
    replaces the saved learner's (it must divide the devices here; it shapes nothing saved)."""
    checkpointer = Checkpointer(checkpoints, async_save=False)
    try:
        cfg = saved_run_config(checkpointer, step)
        if batch_size is not None:
            cfg = cfg.replace(learner={"batch_size": batch_size})
        learner = make_learner(cfg)
        if step is None:
            found = find_resume_point(checkpointer, learner, cfg, None, repair=False)
            if found is None:
                raise FileNotFoundError(f"no complete checkpoint in {checkpointer.directory}")
            return learner, found.restored
        restored, torn = _restore(checkpointer, learner, cfg, step)
        if restored is None:
            raise FileNotFoundError(f"checkpoint {step} in {checkpointer.directory} is torn: "
                                    f"{torn}")
        return learner, restored
    finally:
        checkpointer.close()


class InitFromError(ConfigError):
    """`run.init_from` names no usable checkpoint, or one whose network does not fit the run."""


@dataclass(frozen=True)
class InitSource:
    """The checkpoint a new run's network starts from."""

    checkpoints: Path  # the source run's checkpoints directory, or its best/
    step: int | None   # None: the newest complete checkpoint there
    config: Config     # the config it was saved with


def parse_init_from(spec: str) -> tuple[Path, str]:
    """`RUN_DIR[:best|latest|STEP]` → (RUN_DIR, "best" | "latest" | "STEP")."""
    path, sep, which = spec.rpartition(":")
    if sep and path and (which in ("best", "latest") or which.isdigit()):
        return Path(path), which
    return Path(spec), "latest"


def init_source(cfg: Config, learner: Learner) -> InitSource:
    """Where `cfg.run.init_from` points, checked before any array is read: the run and its
    checkpoint exist, and the network it was saved with fits `learner`'s (InitFromError names
    what does not)."""
    where = f"run.init_from = {cfg.run.init_from!r}"
    run, which = parse_init_from(cfg.run.init_from)
    try:
        checkpoints = checkpoint_dir(run)
    except FileNotFoundError:
        raise InitFromError(f"{where}: {run} is not a run directory (expected "
                            f"{INIT_FROM_FORM})") from None
    if which == "best":
        checkpoints = checkpoints / BEST_DIR
        if not checkpoints.is_dir():
            raise InitFromError(f"{where}: {run} has no best checkpoint yet (no {checkpoints}); "
                                f"name {run}:latest or {run}:STEP instead")
    step = int(which) if which.isdigit() else None
    checkpointer = Checkpointer(checkpoints, async_save=False)
    try:
        source_cfg = saved_run_config(checkpointer, step)
    except FileNotFoundError as e:
        raise InitFromError(f"{where}: {e}") from None
    finally:
        checkpointer.close()
    source_learner = make_learner(source_cfg.replace(
        learner={"batch_size": cfg.learner.batch_size}))
    key = jax.random.key(0)
    _refuse_misfit(where, source_cfg, cfg, jax.eval_shape(source_learner.init, key),
                   jax.eval_shape(learner.init, key))
    return InitSource(checkpoints, step, source_cfg)


def _refuse_misfit(where: str, source_cfg: Config, cfg: Config, source: TrainState,
                   target: TrainState) -> None:
    """InitFromError unless `source`'s parameters (and, with `run.init_optimizer`, optimizer
    state) have `target`'s paths and shapes and the two networks' atoms mean the same returns.
    The compute dtype may differ: parameters are float32 either way."""
    problems = shape_mismatches(source.params, target.params)
    if cfg.run.init_optimizer:
        problems += [f"optimizer state {p}" for p in shape_mismatches(source.opt_state,
                                                                      target.opt_state)]
    support = lambda c: (c.network.v_min, c.network.v_max, c.network.num_atoms)
    if not problems and support(source_cfg) != support(cfg):
        problems.append("the return atoms (network.v_min, v_max, num_atoms): the checkpoint "
                        f"has {support(source_cfg)}, this run {support(cfg)}")
    if problems:
        changed = [f"network.{key} = {value!r} there, {getattr(cfg.network, key)!r} here"
                   for key, value in source_cfg.to_dict()["network"].items()
                   if key != "dtype" and getattr(cfg.network, key) != value]
        raise InitFromError(
            f"{where}: its network does not fit this run's"
            + (f" ({'; '.join(changed)})" if changed else "") + ": "
            + "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more"
                                         if len(problems) > 8 else ""))


def initialised_state(learner: Learner, cfg: Config, fresh: TrainState) -> tuple[TrainState,
                                                                                 str]:
    """`fresh` (a new train state: counters at zero) with the network of the checkpoint
    `run.init_from` names, the target network a copy of it, and with `run.init_optimizer` its
    optimizer state (Adam's moments and their count); and the checkpoint's path. The update
    step stays 0, so the learning-rate schedule (warm-up included) starts from the beginning."""
    source = init_source(cfg, learner)
    try:
        _, restored = restore_run(source.checkpoints, source.step, cfg.learner.batch_size)
    except FileNotFoundError as e:
        raise InitFromError(f"run.init_from = {cfg.run.init_from!r}: {e}") from None
    _refuse_misfit(f"run.init_from = {cfg.run.init_from!r}", restored.config, cfg,
                   restored.train_state, fresh)
    opt_state = restored.train_state.opt_state if cfg.run.init_optimizer else fresh.opt_state
    # A distinct buffer for the target: it is donated to updates while the online params are
    # not.
    state = jax.jit(lambda fresh, params, opt_state: fresh._replace(
        params=params, target_params=jax.tree.map(jnp.copy, params), opt_state=opt_state),
        out_shardings=learner.replicated)(fresh, restored.train_state.params, opt_state)
    origin = str(source.checkpoints.absolute() / str(restored.step))
    counters = restored.counters
    log.info("initialised the network%s from checkpoint %s (%s frames, %s updates there); "
             "frames, updates, schedules and replay start from zero",
             " and the optimizer state" if cfg.run.init_optimizer else "", origin,
             f"{int(counters.get('frames', 0)):,}", f"{int(counters.get('updates', 0)):,}")
    return state, origin


@dataclass(frozen=True)
class StartPoint:
    """Where a run starts: fresh, from its newest complete checkpoint, or (a new run with
    `run.init_from`) fresh but for the network of another run's checkpoint. With several
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
    init_from: str              # the checkpoint the run's network started from ("": none)


def start_point(checkpointer: Checkpointer, learner: Learner, cfg: Config, run_path: Path,
                snapshots: Path | None, resume: bool, repair: bool) -> StartPoint:
    key = jax.random.key(cfg.learner.seed)
    found = find_resume_point(checkpointer, learner, cfg, snapshots, repair) if resume else None
    if found is None:
        if resume:
            log.warning("nothing to resume in %s; starting %s", run_path,
                        "from run.init_from" if cfg.run.init_from else "from scratch")
        key, init_key = jax.random.split(key)
        state, counters, replay, checkpoint = learner.init(init_key), {}, None, None
        if cfg.run.init_from:
            state, counters["init_from"] = initialised_state(learner, cfg, state)
    else:
        restored, replay = found.restored, found.replay
        state, counters = restored.train_state, restored.counters
        key = restored.rng if restored.rng is not None else key
        checkpoint = (restored.step, int(counters.get("frames", 0)))
        log.info("resumed %s at checkpoint %d: %d frames, %d updates, %s%s", run_path,
                 restored.step, counters.get("frames", 0), counters.get("updates", 0),
                 "empty replay" if replay is None else f"{len(replay)} transitions in replay",
                 f" (its network started from {counters['init_from']})"
                 if counters.get("init_from") else "")
    frames, transitions = int(counters.get("frames", 0)), int(counters.get("transitions", 0))
    index, count = jax.process_index(), jax.process_count()
    local_frames = distributed.process_share(frames, index, count)
    if index > 0:
        key = jax.random.fold_in(key, index)
    return StartPoint(state, key, local_frames, frames - local_frames,
                      int(counters.get("updates", 0)), int(counters.get("pulse_until", 0)),
                      distributed.process_share(transitions, index, count), replay, checkpoint,
                      str(counters.get("init_from", "")))
