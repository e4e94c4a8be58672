"""`tempest-jax train` run as a user runs it, in a subprocess, for the dashboard and keyboard tests.

Both train the smoke config. Most of their start-up is compiling the simulator's rollout, so
they share a persistent JAX compilation cache (kept in the temp directory for later runs too).
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

JIT_CACHE = Path(tempfile.gettempdir()) / "tempest-jax-test-jit-cache"
FRAMES = 1_000_000_000  # more than a test ever runs: each test ends the process itself
START_TIMEOUT_S = 240  # compiling on a loaded 2-core machine; usually well under a minute


def train_command(run_dir: Path, *settings: str) -> list[str]:
    exe = shutil.which("tempest-jax") or str(Path(sys.executable).parent / "tempest-jax")
    command = [exe, "train", "--config", "smoke", "--frames", str(FRAMES),
               "--set", f"run.dir={run_dir.parent}", "--set", f"run.name={run_dir.name}"]
    for setting in settings:
        command += ["--set", setting]
    return command


def train_env() -> dict[str, str]:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(JIT_CACHE), PYTHONUNBUFFERED="1")
    env.pop("TEMPEST_TOKEN", None)
    return env


def wait_until(check, timeout: float, what: str):
    """`check()`'s first true value, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def checkpoint_steps(run_dir: Path) -> set[int]:
    """Finished checkpoints (Orbax renames a step's temporary directory when it is complete)."""
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return set()
    return {int(p.name) for p in directory.iterdir() if p.name.isdigit()}


class OutputWatcher:
    """Collects a child's output from `fd` (a pipe or a pty master) on a thread."""

    def __init__(self, fd: int):
        self.fd = fd
        self._text = ""
        self._changed = threading.Condition()
        # Incremental: a character split across two reads still decodes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        with self._changed:
            return self._text

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # a pty master reads EIO once the child side is closed
                data = b""
            with self._changed:
                self._text += self._decoder.decode(data, final=not data)
                self._changed.notify_all()
            if not data:
                return

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first match of `pattern` (multiline) in the output from offset `start`."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search(self._text, start)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise AssertionError(f"no {pattern!r} in the output after {timeout:.0f} s:"
                                         f"\n{self._text[-3000:]}")
                self._changed.wait(min(left, 0.5))
