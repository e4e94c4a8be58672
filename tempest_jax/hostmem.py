"""The host allocator, set for a long-running numeric process.

glibc's malloc returns freed blocks above its mmap threshold (32 MB at most, adjusted as it
goes) to the system at once and trims the heap's free top, so a program that allocates and
frees the same large temporaries on every call (XLA's CPU runtime does, several MB per
inference or learner call) faults every page of them in again each time: measured on the act
call at batch 256, over a thousand page faults and a few milliseconds per call. With both
thresholds fixed high, freed blocks stay in the process and are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this size come from the heap, and the heap keeps this much free memory.
RETAINED_BYTES = 256 << 20


def retain_freed_memory(limit: int = RETAINED_BYTES) -> bool:
    """Keep freed blocks below `limit` bytes for reuse instead of returning them to the system
    (glibc only; elsewhere nothing changes). True when applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, limit))
