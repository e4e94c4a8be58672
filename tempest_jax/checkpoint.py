"""Checkpoints of a run with Orbax's `CheckpointManager`.

One checkpoint (a step directory, written atomically) holds three items:

- `state`: the learner's `TrainState` (online and target parameters, optimizer state, update and
  skip counters) and the run's PRNG key, restored onto the learner's device mesh;
- `counters`: a JSON dict from the trainer (frame counts, schedule positions, ...);
- `config`: the full run config and the model's shape facts, checked on restore.

The last `keep` checkpoints are kept. Saving is asynchronous after the arrays are copied off
the device, so training continues while files are written. A checkpoint whose network does not
match the current one is refused with an error that names every mismatched key.

Orbax writes a step into `<step>.orbax-checkpoint-tmp`, then writes `commit_success.txt` and
renames the directory to `<step>`, so a killed save leaves only the temporary directory, which
Orbax does not list. A step directory is torn if it lacks the commit file or an item, or does
not restore; `remove_interrupted_saves` and `set_aside` clear both out of the way of a resume
(see resume.py).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from tempest_jax.config import Config
from tempest_jax.learner import Learner, TrainState

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
ITEMS = ("state", "counters", "config")
COMMIT_FILE = "commit_success.txt"
INTERRUPTED_SAVE_MARK = ".orbax-checkpoint-tmp"
# Config sections that decide the shapes and meaning of the saved parameters.
MODEL_SECTIONS = ("network",)


def torn_path(path: Path) -> Path:
    """A free name `<name>.torn-<time>` beside `path` to move a torn directory to."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.torn-{stamp}")
    copy = 1
    while target.exists():
        copy += 1
        target = path.with_name(f"{path.name}.torn-{stamp}-{copy}")
    return target


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a different network; the message lists the differences."""


@dataclass(frozen=True)
class Restored:
    step: int
    train_state: TrainState
    counters: dict[str, Any]
    rng: jax.Array | None
    config: Config  # the config the checkpoint was saved with


def _model_facts(learner: Learner) -> dict[str, Any]:
    return {"network": type(learner.network).__name__, "obs_size": learner.obs_size,
            "num_actions": learner.num_actions}


def _path_name(path: tuple) -> str:
    """A pytree key path as `params/trunk_0/kernel`."""
    return "/".join(str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
                    for key in path)


def shape_mismatches(found: Any, expected: Any) -> list[str]:
    """Every leaf whose shape differs between two pytrees of arrays (or shape structs), or
    that only one of them has, by path: "params/trunk_0/kernel: the checkpoint has (323, 32),
    this run (323, 384)"."""
    shapes = lambda tree: {_path_name(path): tuple(leaf.shape) for path, leaf in
                           jax.tree_util.tree_flatten_with_path(tree)[0]}
    have, want = shapes(found), shapes(expected)
    return [f"{path}: the checkpoint has {have.get(path, 'none')}, this run "
            f"{want.get(path, 'none')}"
            for path in sorted(have.keys() | want.keys()) if have.get(path) != want.get(path)]


class Checkpointer:
    """Save and restore checkpoints under `directory`, keeping the last `keep`."""

    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=async_save))

    def save(self, step: int, learner: Learner, train_state: TrainState,
             counters: dict[str, Any], config: Config, rng: jax.Array | None = None) -> None:
        """Start writing checkpoint `step`. The arrays are copied before this returns, so the
        caller may donate `train_state` to the next update at once."""
        state = {"train": train_state}
        if rng is not None:
            # A host value, not a device array: with several processes each holds its own
            # key, and the primary process's one is saved.
            state["rng"] = np.asarray(jax.random.key_data(rng))
        meta = {"format": FORMAT_VERSION, "config": config.without_secrets().to_dict(),
                "model": _model_facts(learner), "has_rng": rng is not None}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), counters=ocp.args.JsonSave(dict(counters)),
            config=ocp.args.JsonSave(meta)))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def saved_config(self, step: int | None = None) -> Config:
        """The config checkpoint `step` (default: the latest) was saved with."""
        return Config.from_dict(self._meta(self._resolve(step))["config"],
                                origin=f"checkpoint {self.directory}")

    def restore(self, learner: Learner, config: Config, step: int | None = None) -> Restored:
        """Restore checkpoint `step` (default: the latest) onto `learner`'s devices.

        Raises `CheckpointMismatchError` if the checkpoint's network section or model shape
        facts differ from `config` and `learner`, and FileNotFoundError if there is none.
        """
        step = self._resolve(step)
        meta = self._meta(step)
        self._check_compatible(step, meta, learner, config)
        on_mesh = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=learner.replicated)
        abstract = {"train": jax.tree.map(on_mesh, jax.eval_shape(learner.init,
                                                                  jax.random.key(0)))}
        if meta["has_rng"]:
            abstract["rng"] = on_mesh(jax.random.key_data(jax.random.key(0)))
        items = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), counters=ocp.args.JsonRestore()))
        state = items["state"]
        # The key comes back as a host value: every process keeps its own copy to split.
        rng = jax.random.wrap_key_data(np.asarray(state["rng"])) if meta["has_rng"] else None
        return Restored(step, TrainState(*state["train"]), dict(items["counters"]), rng,
                        Config.from_dict(meta["config"], origin=f"checkpoint {step}"))

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

    def steps_on_disk(self) -> list[int]:
        """Committed step directories, read from disk (safe from any thread), ascending."""
        return sorted(int(p.name) for p in self.directory.iterdir()
                      if p.is_dir() and p.name.isdigit())

    def missing_parts(self, step: int) -> str | None:
        """Why committed step `step` is incomplete on disk, or None if every part is there.
        (Truncated or corrupt files show up only when restoring.)"""
        path = self.directory / str(step)
        if not (path / COMMIT_FILE).is_file():
            return f"no {COMMIT_FILE}"
        missing = [item for item in ITEMS if not (path / item / COMMIT_FILE).is_file()]
        return f"item{'s' if len(missing) > 1 else ''} {', '.join(missing)} incomplete" \
            if missing else None

    def remove_interrupted_saves(self) -> list[Path]:
        """Delete the temporary directories of saves that never committed (by construction
        incomplete; they would also block a new save of the same step). Returns them."""
        interrupted = sorted(p for p in self.directory.iterdir()
                             if INTERRUPTED_SAVE_MARK in p.name)
        for path in interrupted:
            shutil.rmtree(path)
            log.warning("removed %s: a checkpoint save that was interrupted before it "
                        "committed", path)
        return interrupted

    def set_aside(self, step: int, reason: str) -> Path:
        """Rename step `step` to `<step>.torn-<time>`, where Orbax no longer sees it (it is
        neither restored nor counted among the kept checkpoints), and say so."""
        target = torn_path(self.directory / str(step))
        (self.directory / str(step)).rename(target)
        self.manager.reload()
        log.warning("checkpoint %d in %s is not usable (%s); moved it to %s", step,
                    self.directory, reason, target.name)
        return target

    def _resolve(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None or step not in self.manager.all_steps():
            raise FileNotFoundError(f"no checkpoint{'' if step is None else f' {step}'} in "
                                    f"{self.directory}")
        return step

    def counters(self, step: int) -> dict[str, Any]:
        """The counters checkpoint `step` was saved with (without restoring its arrays)."""
        return dict(self.manager.restore(step, args=ocp.args.Composite(
            counters=ocp.args.JsonRestore()))["counters"])

    def _meta(self, step: int) -> dict[str, Any]:
        return self.manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))["config"]

    def _check_compatible(self, step: int, meta: dict[str, Any], learner: Learner,
                          config: Config) -> None:
        if meta.get("format") != FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} has format {meta.get('format')!r}; "
                f"this version reads format {FORMAT_VERSION}")
        current = config.to_dict()
        problems = [f"{section}.{key}: checkpoint has {value!r}, config has "
                    f"{current[section].get(key)!r}"
                    for section in MODEL_SECTIONS
                    for key, value in meta["config"].get(section, {}).items()
                    if current[section].get(key) != value]
        problems += [f"{key}: checkpoint has {value!r}, learner has "
                     f"{_model_facts(learner)[key]!r}"
                     for key, value in meta["model"].items()
                     if _model_facts(learner).get(key) != value]
        if problems:
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} does not fit the current network: "
                + "; ".join(problems))
