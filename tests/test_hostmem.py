"""The host allocator keeps freed large blocks: a temporary allocated and freed over and over
is faulted in once, not on every allocation."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
import numpy as np
from tempest_jax import hostmem
if sys.argv[1] == "retain":
    assert hostmem.retain_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(64 << 20, np.uint8)  # 64 MB, every page written
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    # By default every allocation faults the block in (in 4 KB or huge pages); retained, only
    # the first one does.
    assert page_faults("retain") * 5 < page_faults("default")
