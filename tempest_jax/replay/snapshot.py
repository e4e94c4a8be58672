"""Replay snapshots: one `.npy` per field plus `manifest.json`, written to a temporary directory
beside the target and renamed into place.

Saving does not stop the writer. The only moments it holds the buffer lock are reading the
counters and copying the priority leaves in chunks (a few milliseconds each); the big arrays are
copied from the live buffer 64 MB at a time, checksummed and written. Consistency comes from the
serial numbering (buffer.py): with W0 the serial count when the save starts and W1 when the
arrays are on disk,

- a transition whose leaf was positive in the copied leaves had its fields written before its
  leaf, so its fields are on disk;
- a slot whose serial (counted from W0) is older than W1 - capacity may have been overwritten
  while it was being written: its priority is zeroed in the snapshot;
- a transition completed during the save whose successor serial is >= W0 would point at such a
  slot: it is dropped too.

Everything left refers only to rows that nobody wrote during the save. The snapshot records
obs_written = W0, each file's CRC-32 and the checkpoint step it belongs to. Loading validates the
manifest, every file's size, checksum, dtype and shape, and rebuilds the sum tree vectorized; if
the capacity changes, the most recent transitions are kept.

A training run keeps its snapshots in `replay/<checkpoint step>/` beside `checkpoints/`. A kill
leaves at most a hidden temporary directory there (removed by `remove_partial_snapshots`), never
a half-written `<step>/`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from tempest_jax.config import ReplayConfig
from tempest_jax.features import STATE_SIZE
from tempest_jax.replay.buffer import ReplayBuffer

log = logging.getLogger(__name__)
FORMAT = "tempest-jax-replay"
VERSION = 2
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


def _write_npy(path: Path, array: np.ndarray) -> tuple[int, int]:
    """Write `array` as .npy in large slices (the file write releases the GIL) and fsync.
    Returns the file's size and CRC-32."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
    crc = zlib.crc32(header.getvalue())
    with open(path, "wb") as f:
        f.write(header.getvalue())
        rows_per_write = max(1, _WRITE_BYTES // max(1, array[:1].nbytes))
        for first in range(0, len(array), rows_per_write):
            # A copy: the writer may change live rows between checksumming and writing them.
            block = memoryview(np.array(array[first:first + rows_per_write], order="C"))
            crc = zlib.crc32(block, crc)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
        return f.tell(), crc


def _file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_WRITE_BYTES):
            crc = zlib.crc32(block, crc)
    return crc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_snapshot(buffer: ReplayBuffer, directory: str | Path,
                  checkpoint_step: int | None = None) -> Path:
    """Write `buffer` to `directory` (replacing it), recording the checkpoint it belongs to."""
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

        written = {name: _write_npy(tmp / f"{name}.npy", getattr(buffer, name)[:rows])
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
        written["priority"] = _write_npy(tmp / "priority.npy", priority)

        manifest = {
            "format": FORMAT, "version": VERSION, "capacity": capacity,
            "obs_size": buffer.obs_size, "obs_written": start_written, "rows": rows,
            "max_priority": max_priority, "params": buffer.params(),
            "checkpoint_step": checkpoint_step,
            "files": {name: {"dtype": dtype.str, "shape": list(shape), "bytes": written[name][0],
                             "crc32": written[name][1]}
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
    step = manifest.get("checkpoint_step")
    if step is not None and (not isinstance(step, int) or step < 0):
        raise ReplaySnapshotError(f"{path}: checkpoint_step must be a non-negative integer")
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
        if _file_crc32(path) != entry.get("crc32"):
            raise ReplaySnapshotError(f"{path}: CRC-32 differs from the manifest's (corrupt or "
                                      f"replaced)")
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
                  obs_size: int = STATE_SIZE, checkpoint_step: int | None = None) -> ReplayBuffer:
    """The buffer saved in `directory`. With `checkpoint_step`, the snapshot must have been
    saved for that checkpoint. Raises ReplaySnapshotError for anything missing or corrupt."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if checkpoint_step is not None and manifest["checkpoint_step"] != checkpoint_step:
        raise ReplaySnapshotError(f"{directory}: saved for checkpoint "
                                  f"{manifest['checkpoint_step']}, not {checkpoint_step}")
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


def snapshot_steps(root: str | Path) -> list[int]:
    """Checkpoint steps with a snapshot directory under `root` (complete or not), ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def remove_partial_snapshots(root: str | Path) -> list[Path]:
    """Clean up after a save that was killed: delete its temporary directory, and put back a
    snapshot that was moved aside to be replaced if its replacement never arrived. Returns the
    directories deleted."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        if not path.name.startswith("."):
            continue
        stem, _, tag = path.name[1:].partition(".")  # save_snapshot's `.<name>.tmp-*`, `.old-*`
        if tag.startswith("old-"):
            kept = path / stem
            if kept.is_dir() and not (root / stem).exists():
                os.replace(kept, root / stem)
                log.warning("replay snapshot %s was being replaced when the run stopped; put the "
                            "previous one back", root / stem)
        elif not tag.startswith("tmp-"):
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed


def prune_snapshots(root: str | Path, checkpoint_steps: list[int]) -> None:
    """Delete the snapshots older than the newest one whose checkpoint is on disk; newer ones
    stay until their checkpoint is (it may still be being written)."""
    on_disk = set(checkpoint_steps)
    paired = [step for step in snapshot_steps(root) if step in on_disk]
    if not paired:
        return
    for step in snapshot_steps(root):
        if step < paired[-1]:
            shutil.rmtree(Path(root) / str(step), ignore_errors=True)
