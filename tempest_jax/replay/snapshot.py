"""Replay snapshots: one `.npy` per field plus `manifest.json`, written to a temporary directory
beside the target and renamed into place.

Saving does not stop the writer. The only moments it holds the buffer lock are reading the
counters and copying the priority leaves in chunks (a few milliseconds each); the big arrays are
written straight from the live buffer. Consistency comes from the serial numbering (buffer.py):
with W0 the serial count when the save starts and W1 when the arrays are on disk,

- a transition whose leaf was positive in the copied leaves had its fields written before its
  leaf, so its fields are on disk;
- a slot whose serial (counted from W0) is older than W1 - capacity may have been overwritten
  while it was being written: its priority is zeroed in the snapshot;
- a transition completed during the save whose successor serial is >= W0 would point at such a
  slot: it is dropped too.

Everything left refers only to rows that nobody wrote during the save. The snapshot records
obs_written = W0. Loading validates the manifest, every file's size, dtype and shape, and
rebuilds the sum tree vectorized; if the capacity changes, the most recent transitions are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tempest_jax.config import ReplayConfig
from tempest_jax.features import STATE_SIZE
from tempest_jax.replay.buffer import ReplayBuffer

FORMAT = "tempest-jax-replay"
VERSION = 1
MANIFEST = "manifest.json"
_CHUNK_ROWS = 1 << 20
_WRITE_BYTES = 64 << 20


class ReplaySnapshotError(ValueError):
    """A replay snapshot that is missing, truncated, or does not match its manifest."""


def _expected(rows: int, obs_size: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    return {"obs": (np.dtype(np.float16), (rows, obs_size)),
            "action": (np.dtype(np.uint8), (rows,)),
            "ret": (np.dtype(np.float32), (rows,)),
            "discount": (np.dtype(np.float32), (rows,)),
            "is_expert": (np.dtype(bool), (rows,)),
            "next_slot": (np.dtype(np.int32), (rows,)),
            "priority": (np.dtype(np.float64), (rows,))}


def _write_npy(path: Path, array: np.ndarray) -> int:
    """Write `array` as .npy in large slices (the file write releases the GIL) and fsync."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, np.lib.format.header_data_from_array_1_0(array))
        rows_per_write = max(1, _WRITE_BYTES // max(1, array[:1].nbytes))
        for first in range(0, len(array), rows_per_write):
            f.write(memoryview(np.ascontiguousarray(array[first:first + rows_per_write])))
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_snapshot(buffer: ReplayBuffer, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        capacity = buffer.capacity
        with buffer.lock:
            start_written = buffer.obs_written
            max_priority = buffer._max_priority
        rows = min(start_written, capacity)
        priority = np.empty(rows, dtype=np.float64)
        for first in range(0, rows, _CHUNK_ROWS):
            last = min(rows, first + _CHUNK_ROWS)
            with buffer.lock:
                priority[first:last] = buffer.tree.levels[0][first:last]

        sizes = {name: _write_npy(tmp / f"{name}.npy", getattr(buffer, name)[:rows])
                 for name in ReplayBuffer.FIELDS}
        with buffer.lock:
            end_written = buffer.obs_written

        saved_next = np.load(tmp / "next_slot.npy", mmap_mode="r")
        for first in range(0, rows, _CHUNK_ROWS):
            last = min(rows, first + _CHUNK_ROWS)
            slot = np.arange(first, last, dtype=np.int64)
            serial = start_written - 1 - (start_written - 1 - slot) % capacity
            successor = serial + (saved_next[first:last].astype(np.int64) - slot) % capacity
            unsafe = (serial < end_written - capacity) | (successor >= start_written)
            priority[first:last][unsafe] = 0.0
        del saved_next
        sizes["priority"] = _write_npy(tmp / "priority.npy", priority)

        manifest = {
            "format": FORMAT, "version": VERSION, "capacity": capacity,
            "obs_size": buffer.obs_size, "obs_written": start_written, "rows": rows,
            "max_priority": max_priority, "params": buffer.params(),
            "files": {name: {"dtype": dtype.str, "shape": list(shape), "bytes": sizes[name]}
                      for name, (dtype, shape) in _expected(rows, buffer.obs_size).items()},
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)

        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        _fsync_dir(directory.parent)
        if old is not None:
            shutil.rmtree(old)
        return directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise ReplaySnapshotError(f"{directory}: no {MANIFEST}; not a replay snapshot, or an "
                                  f"incomplete one")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReplaySnapshotError(f"{path}: unreadable manifest: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ReplaySnapshotError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ReplaySnapshotError(f"{path}: snapshot version {manifest.get('version')!r}, this "
                                  f"code reads version {VERSION}")
    for key in ("capacity", "obs_size", "obs_written", "rows"):
        if not isinstance(manifest.get(key), int) or manifest[key] < 0:
            raise ReplaySnapshotError(f"{path}: {key} must be a non-negative integer")
    if manifest["capacity"] < 1 or manifest["rows"] != min(manifest["obs_written"],
                                                            manifest["capacity"]):
        raise ReplaySnapshotError(f"{path}: capacity, rows and obs_written are inconsistent")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("params"),
                                                                     dict):
        raise ReplaySnapshotError(f"{path}: files or params missing")
    return manifest


def _open_arrays(directory: Path, manifest: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (dtype, shape) in _expected(manifest["rows"], manifest["obs_size"]).items():
        path = directory / f"{name}.npy"
        entry = manifest["files"].get(name)
        if not isinstance(entry, dict) or entry.get("dtype") != dtype.str or \
                entry.get("shape") != list(shape):
            raise ReplaySnapshotError(f"{directory}: manifest entry for {name} does not describe "
                                      f"a {dtype} array of shape {shape}")
        if not path.is_file():
            raise ReplaySnapshotError(f"{path}: missing")
        if path.stat().st_size != entry.get("bytes"):
            raise ReplaySnapshotError(f"{path}: {path.stat().st_size} bytes, the manifest says "
                                      f"{entry.get('bytes')} (truncated or replaced)")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ReplaySnapshotError(f"{path}: not a readable .npy file: {e}") from None
        if array.dtype != dtype or array.shape != shape:
            raise ReplaySnapshotError(f"{path}: holds {array.dtype} {array.shape}, expected "
                                      f"{dtype} {shape}")
        arrays[name] = array
    return arrays


def load_snapshot(directory: str | Path, cfg: ReplayConfig | None = None,
                  obs_size: int = STATE_SIZE) -> ReplayBuffer:
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if manifest["obs_size"] != obs_size:
        raise ReplaySnapshotError(f"{directory}: observations of {manifest['obs_size']} values, "
                                  f"expected {obs_size}")
    arrays = _open_arrays(directory, manifest)
    old_capacity, written, rows = (manifest["capacity"], manifest["obs_written"],
                                   manifest["rows"])
    if cfg is not None:
        buffer = ReplayBuffer.from_config(cfg, obs_size)
    else:
        try:
            buffer = ReplayBuffer(old_capacity, obs_size, **manifest["params"])
        except TypeError as e:
            raise ReplaySnapshotError(f"{directory}: bad params in manifest: {e}") from None
    capacity = buffer.capacity
    leaves = np.zeros(capacity, dtype=np.float64)
    for first in range(0, rows, _CHUNK_ROWS):
        last = min(rows, first + _CHUNK_ROWS)
        slot = np.arange(first, last, dtype=np.int64)
        serial = written - 1 - (written - 1 - slot) % old_capacity
        priority = np.asarray(arrays["priority"][first:last])
        next_slot = arrays["next_slot"][first:last].astype(np.int64)
        live = priority > 0
        if not np.all((priority >= 0) & (priority < np.inf)):
            raise ReplaySnapshotError(f"{directory}: priorities must be finite and >= 0")
        if np.any(live & ((next_slot < 0) | (next_slot >= old_capacity))):
            raise ReplaySnapshotError(f"{directory}: successor slot out of range")
        successor = serial + (next_slot - slot) % old_capacity
        if capacity == old_capacity:
            keep, target = slice(None), slice(first, last)
        else:  # keep the most recent serials; each moves to its slot in the new ring
            keep = serial >= written - capacity
            target = serial[keep] % capacity
        for name in ("obs", "action", "ret", "discount", "is_expert"):
            getattr(buffer, name)[target] = arrays[name][first:last][keep]
        buffer.next_slot[target] = successor[keep] % capacity
        leaves[target] = priority[keep]
    buffer.tree.set_leaves(leaves)
    buffer._restore(written, float(manifest.get("max_priority", 1.0)))
    return buffer
