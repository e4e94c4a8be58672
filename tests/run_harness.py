"""Training runs in tests: `tempest-jax train` as a user starts it (`TrainProcess`), or a
`Trainer` on a thread of the test process (`TrainerThread`).

Both stop what they started when the test ends, passed or failed (use them in `with`). Neither
has a wall-clock deadline of its own: a wait goes on while the run is alive and ends with an
error as soon as it has died, so a compile on a loaded machine only makes a test slower; the
test's own pytest timeout bounds a run that hangs.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

POLL_S = 0.1
FRAMES = 1_000_000_000  # more than a test ever runs: each test ends the process itself


def smoke_args(run_dir: Path, *settings: str) -> list[str]:
    """`train` arguments for an endless smoke run in `run_dir`, with `--set` settings."""
    args = ["--config", "smoke", "--frames", str(FRAMES), "--set", f"run.dir={run_dir.parent}",
            "--set", f"run.name={run_dir.name}"]
    for setting in settings:
        args += ["--set", setting]
    return args


def train_executable() -> str:
    return shutil.which("tempest-jax") or str(Path(sys.executable).parent / "tempest-jax")


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

    @property
    def open(self) -> bool:
        return self._thread.is_alive()

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

    def join(self) -> None:
        self._thread.join()

    def search(self, regex: re.Pattern, start: int) -> re.Match | None:
        with self._changed:
            return regex.search(self._text, start)

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)


class TrainProcess:
    """`tempest-jax train ARGS` in a child process. With `terminal=True` its stdin, stdout and
    stderr are a pseudo-terminal (`send` types keys), else stdin is empty and its output goes to
    a pipe. Output is collected on a thread, so the child never blocks on a full pipe."""

    def __init__(self, args: list[str], *, terminal: bool = False,
                 env: dict[str, str] | None = None):
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        env.pop("TEMPEST_TOKEN", None)
        command = [train_executable(), "train", *args]
        if terminal:
            self._fd, child = os.openpty()
            self.terminal_mode = termios.tcgetattr(self._fd)  # a master reads its terminal's
            self.proc = subprocess.Popen(command, stdin=child, stdout=child, stderr=child,
                                         env=env, start_new_session=True)
            os.close(child)  # the child holds it now; the master reads EIO once it is gone
        else:
            self._fd = None
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        self.output = OutputWatcher(self._fd if terminal else self.proc.stdout.fileno())

    @property
    def fd(self) -> int:
        """The pseudo-terminal's master side (terminal=True)."""
        return self._fd

    @property
    def text(self) -> str:
        return self.output.text

    def send(self, keys: bytes) -> None:
        os.write(self._fd, keys)

    def wait_for(self, pattern: str, start: int = 0) -> re.Match:
        """The first match of `pattern` (multiline) in the output from offset `start`, waiting
        while the process lives; AssertionError once it has ended without one."""
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            match = self.output.search(regex, start)
            if match:
                return match
            if not self.output.open:  # the child's output ended: it exited
                match = self.output.search(regex, start)
                if match:
                    return match
                raise AssertionError(f"train exited ({self.proc.wait()}) without "
                                     f"{pattern!r}:\n{self.text[-3000:]}")
            self.output.wait_changed(0.5)

    def wait_until(self, check, what: str):
        """`check()`'s first true value, polled while the process lives."""
        while True:
            value = check()
            if value:
                return value
            assert self.proc.poll() is None, (
                f"train exited ({self.proc.returncode}) before {what}:\n{self.text[-3000:]}")
            time.sleep(POLL_S)

    def wait(self) -> int:
        """Its exit status, once it has ended of its own accord or by a signal sent."""
        code = self.proc.wait()
        self.output.join()
        return code

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        self.kill()
        self.output.join()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TrainProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TrainerThread:
    """`trainer.run(**kwargs)` on a thread of the test process. Records what `run` returned or
    raised, when it ended, and when the run's first thread failure appeared. Leaving the `with`
    block stops the run and waits for it."""

    def __init__(self, trainer, **run_kwargs):
        self.trainer = trainer
        self.returned = None
        self.raised: BaseException | None = None
        self.failed_at: float | None = None
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._run, kwargs=run_kwargs,
                                        name="test-trainer", daemon=True)
        self._failure_watcher = threading.Thread(target=self._watch_failure, daemon=True)
        self._thread.start()
        self._failure_watcher.start()

    def _run(self, **run_kwargs) -> None:
        try:
            self.returned = self.trainer.run(**run_kwargs)
        except BaseException as e:
            self.raised = e
        finally:
            self.ended_at = time.monotonic()

    def _watch_failure(self) -> None:
        while self.ended_at is None and self.trainer.supervisor.failure is None:
            time.sleep(0.01)
        self.failed_at = time.monotonic()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_until(self, check, what: str):
        """`check()`'s first true value, polled while the run goes on."""
        while True:
            value = check()
            if value:
                return value
            assert self.alive(), f"the run ended before {what}: {self.raised!r}"
            time.sleep(POLL_S)

    def wait_for_server(self) -> tuple[str, int]:
        """The game server's address, once it serves (after compiling inference)."""
        return self.wait_until(lambda: self.trainer.server and self.trainer.server.address,
                               "the game server started")

    def join(self) -> None:
        """Wait for the run to end of its own accord (its frame budget, a failure)."""
        self._thread.join()
        self._failure_watcher.join()

    def stop(self):
        """Stop the run and wait for it; what `run` returned. Re-raises what it raised."""
        self.trainer.stop()
        self.join()
        if self.raised is not None:
            raise self.raised
        return self.returned

    def __enter__(self) -> TrainerThread:
        return self

    def __exit__(self, *exc) -> None:
        self.trainer.stop()
        self.join()
