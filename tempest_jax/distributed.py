"""Multi-host training on JAX's own distributed runtime (`jax.distributed`).

Every host runs one process with its own frame sources and replay shard. The learner's mesh
spans the devices of all processes; each process feeds its share of the global batch
(`global_batch`), gets back the priorities of its own rows (`local_rows`), and runs inference on
its local devices only. Processes agree once per learner dispatch on whether to update, save or
stop (`Agreement`, through the runtime's key-value store), so every process issues the same
sequence of device collectives.

Failure handling: JAX's coordination service declares a process dead when its heartbeats stop
for `heartbeat_timeout_s` and then terminates every other process with "JAX distributed service
detected fatal errors ... another task died". A peer that closes its sockets mid-collective makes
the collective raise at once. An agreement that a peer never reaches raises after
`collective_timeout_s`, and a `Watchdog` ends a process whose update or save collective runs
that long (a peer alive but stuck).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

from tempest_jax.config import Config, ConfigError, DistributedConfig
from tempest_jax.rundir import RunDir

log = logging.getLogger(__name__)
# Exit status of a process the watchdog ends (distinct from Python's 1 and an abort's 134).
WATCHDOG_EXIT_STATUS = 75
_DETECTION = {"auto": None, "none": "deactivate"}
RUN_NAME_BYTES = 256


class DistributedError(RuntimeError):
    """The distributed runtime could not start, or a peer process failed."""


def parse_device_ids(text: str) -> list[int] | None:
    """`"0,1"` → [0, 1]; empty → None (all local devices)."""
    if not text.strip():
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"distributed.local_device_ids must be comma-separated integers, "
                          f"got {text!r}") from None


def initialize(cfg: DistributedConfig) -> None:
    """Join the job described by `cfg` (a no-op unless `cfg.enabled`). Must run before
    anything touches a JAX device; explicit settings win over detected ones."""
    if not cfg.enabled:
        return
    if jax.distributed.is_initialized():
        raise DistributedError("jax.distributed is already initialized in this process")
    # The CPU backend needs a cross-process collectives implementation; gloo (TCP) is built
    # in. It only takes effect if set before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    settings = {"coordinator_address": cfg.coordinator_address or None,
                "num_processes": cfg.num_processes or None,
                "process_id": cfg.process_id if cfg.process_id >= 0 else None,
                "local_device_ids": parse_device_ids(cfg.local_device_ids)}
    described = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None) or (
        "all settings detected from the environment")
    try:
        jax.distributed.initialize(
            **settings, cluster_detection_method=_DETECTION.get(cfg.cluster_detection,
                                                                cfg.cluster_detection),
            initialization_timeout=cfg.initialization_timeout_s,
            heartbeat_timeout_seconds=cfg.heartbeat_timeout_s,
            shutdown_timeout_seconds=cfg.shutdown_timeout_s)
    except (ValueError, TypeError) as e:
        raise DistributedError(
            f"cannot start distributed training ({described}): {e}. Set "
            "distributed.coordinator_address, num_processes and process_id (or train "
            "--coordinator/--num-processes/--process-id) unless running under a cluster JAX "
            "detects (Cloud TPU VM, SLURM, Open MPI)") from e
    except RuntimeError as e:
        raise DistributedError(
            f"cannot join the distributed job ({described}) within "
            f"{cfg.initialization_timeout_s} s: {e}. Check that every process was started, that "
            "they agree on the coordinator address and process count, and that process 0 can "
            "bind the coordinator port") from e
    log.info("distributed: process %d of %d, %d local of %d devices (%s); a process silent "
             "for %d s stops the job", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
             cfg.heartbeat_timeout_s)


def shutdown() -> None:
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def is_primary() -> bool:
    """Process 0 writes the run's files (config, metrics, terminal rows) and the dashboard."""
    return jax.process_index() == 0


def shared_run_dir(cfg: Config) -> RunDir:
    """The run directory of a multi-process run: process 0 names (a timestamp unless run.name
    is set) and creates it, every process then uses it. Where processes do not share storage
    the others get their own empty copy, but checkpoints need storage all of them see."""
    from jax.experimental import multihost_utils

    name = (cfg.run.name or time.strftime("%Y%m%d-%H%M%S")).encode()
    if len(name) > RUN_NAME_BYTES:
        raise ConfigError(f"run.name is longer than {RUN_NAME_BYTES} bytes")
    padded = np.frombuffer(name.ljust(RUN_NAME_BYTES, b"\0"), np.uint8)
    name = bytes(multihost_utils.broadcast_one_to_all(padded)).rstrip(b"\0").decode()
    if is_primary():
        run = RunDir.create(cfg.replace(run={"name": name}))
    multihost_utils.sync_global_devices("tempest-jax run directory")
    if not is_primary():
        run = RunDir(Path(cfg.run.dir) / name)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
    return run


def global_batch(local: Any, sharding: jax.sharding.Sharding) -> Any:
    """One global array per leaf from each process's rows (its share of the batch dimension
    `sharding` splits); with one process, a plain transfer."""
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local)


def local_rows(array: jax.Array, axis: int) -> np.ndarray:
    """This process's rows of a global array split along `axis`, in the order it fed them to
    `global_batch` (addressable shards sorted by their offset)."""
    if array.is_fully_addressable:
        return np.asarray(array)
    shards = {}
    for shard in array.addressable_shards:
        start = shard.index[axis].start or 0
        shards.setdefault(start, shard.data)  # replicas along other axes hold the same rows
    return np.concatenate([np.asarray(shards[s]) for s in sorted(shards)], axis=axis)


def local_copy(tree: Any, sharding: jax.sharding.NamedSharding) -> Any:
    """A replicated global pytree as arrays replicated by `sharding` over this process's
    devices (its addressable shards, no copy), so local computations need no other process."""
    devices = list(sharding.mesh.devices.flat)

    def local(x: jax.Array) -> jax.Array:
        by_device = {shard.device: shard.data for shard in x.addressable_shards}
        return jax.make_array_from_single_device_arrays(x.shape, sharding,
                                                        [by_device[d] for d in devices])

    return jax.tree.map(local, tree)


class Agreement:
    """Per-dispatch agreement between processes on a few facts.

    Each process contributes a list of ints and one of floats; every process gets back both as
    (num_processes, n) tables, identical everywhere. The values travel through the distributed
    runtime's key-value store, not as a device collective, so an agreement never queues on the
    devices behind (or ahead of) this process's inference. Every process must call `gather` the
    same number of times; a process that has not arrived within `timeout_s` is an error.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.round = 0

    def gather(self, ints: list[int], floats: list[float]) -> tuple[np.ndarray, np.ndarray]:
        if jax.process_count() == 1:
            return np.asarray([ints], np.int64), np.asarray([floats], np.float64)
        from jax._src import distributed as jax_distributed  # the runtime's own client

        client = jax_distributed.global_state.client
        me, count = jax.process_index(), jax.process_count()
        key = "tempest-jax/agreement/{}/{}"
        client.key_value_set(key.format(self.round, me), json.dumps([ints, floats]))
        rows = []
        for process in range(count):
            try:
                rows.append(json.loads(client.blocking_key_value_get(
                    key.format(self.round, process), int(self.timeout_s * 1000))))
            except Exception as e:  # the runtime raises its own error types
                raise DistributedError(
                    f"process {process} did not reach agreement {self.round} within "
                    f"{self.timeout_s:.0f} s (distributed.collective_timeout_s): it is stuck or "
                    f"gone. Resume from the last checkpoint. ({e})") from e
        # Every process read this process's previous-but-one value before publishing the
        # previous round, so it can go.
        if self.round >= 2:
            client.key_value_delete(key.format(self.round - 2, me))
        self.round += 1
        return (np.asarray([r[0] for r in rows], np.int64),
                np.asarray([r[1] for r in rows], np.float64))


class Watchdog:
    """Ends the process with a clear message when a guarded section (a collective) runs past
    `timeout_s`: a peer that is alive but stuck would otherwise hang every process."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._what = ""
        self._thread = threading.Thread(target=self._watch, name="collective-watchdog",
                                        daemon=True)
        self._thread.start()

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        with self._lock:
            self._deadline, self._what = time.monotonic() + self.timeout_s, what
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout_s / 4))
            with self._lock:
                late = self._deadline is not None and time.monotonic() > self._deadline
                what = self._what
            if late:
                log.critical("process %d: %s took over %.0f s (distributed.collective_timeout_s);"
                             " another process is stuck or gone. Exiting; resume from the last "
                             "checkpoint.", jax.process_index(), what, self.timeout_s)
                logging.shutdown()
                os._exit(WATCHDOG_EXIT_STATUS)


def process_share(total: int, index: int, count: int) -> int:
    """Process `index`'s part of a run-wide count restored from a checkpoint, such that the
    parts of all `count` processes sum to `total` (process 0 takes the remainder)."""
    return total // count + (total % count if index == 0 else 0)


def process_seed(seed: int) -> int | list[int]:
    """A numpy seed for this process's own random stream (replay sampling): `seed` itself on
    process 0, so a one-process run is unchanged; distinct on every other process."""
    return seed if jax.process_index() == 0 else [seed, jax.process_index()]


def digest(tree: Any) -> str:
    """A short hash of a replicated pytree's values, to compare processes in their logs."""
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        sha.update(np.asarray(leaf.addressable_data(0)).tobytes())
    return sha.hexdigest()[:16]
