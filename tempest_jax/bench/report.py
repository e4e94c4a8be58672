"""Shared helpers for benchmarks: machine description, timing, text tables."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np


def machine_info() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import jax
        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    return info


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of one process (Linux /proc); 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name is in parentheses and may contain spaces: split after it.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def progress(bench: str, text: str) -> None:
    """One measured point on stderr as soon as it is measured, so a bench stopped at a time limit
    (scripts/device_check.sh) still leaves what it did in the log."""
    print(f"bench {bench}: {text}", file=sys.stderr, flush=True)


def best_rate(work: Callable[[], int], min_seconds: float = 1.0, repeats: int = 3) -> float:
    """Items per second of `work()` (which returns the items it did): the best of `repeats`
    timed rounds of at least `min_seconds` each, after one warm-up call."""
    work()
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds:
            done += work()
        best = max(best, done / elapsed)
    return best


def alternating_times(calls: list[Callable[[], object]], seconds: float,
                      warmup_rounds: int = 3) -> np.ndarray:
    """(rounds, len(calls)) milliseconds per call: the calls made in turn, round after round,
    for at least `seconds` (and 3 rounds) after `warmup_rounds` untimed rounds. Calls timed
    alternately share a busy machine's slow moments, so their differences hold up under load."""
    for _ in range(warmup_rounds):
        for call in calls:
            call()
    rounds, clock = [], time.perf_counter
    end = clock() + seconds
    while clock() < end or len(rounds) < 3:
        times = []
        for call in calls:
            start = clock()
            call()
            times.append((clock() - start) * 1e3)
        rounds.append(times)
    return np.asarray(rounds)


def table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(_fmt(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
