"""Supervision of a run's long-lived threads: none may fail or stall unnoticed.

Every long-lived thread of a run (server loop, learner, replay prefetcher, replay snapshot
writer, evaluator, dashboard, keyboard) is started through the run's `Supervisor`, as a
`Watch`. The thread calls `watch.beat()` each time it makes progress. Two things end the run:

- an exception escaping the thread's function (the thread failed), and
- no beat for `stall_timeout_s` while the watch says work is waiting for the thread (it
  stalled: a deadlock, a hung device call, a peer that never answers).

The first of them becomes the run's `failure` (later ones are logged only) and calls
`on_failure` once, from the failing thread or the supervisor's monitor thread; the run then
stops, saves what it soundly can and raises `RunFailed`, which names the thread and the error.

Fault injection, for checking a deployment's failure handling end to end: the environment
variable `TEMPEST_FAULT` names threads to break, comma-separated, each `NAME[@BEATS][:hang]`:
at that thread's BEATS-th beat (default 1) it raises `InjectedFault`, or with `:hang` it stops
making progress until the supervisor is closed (and then raises).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

FAULT_ENV = "TEMPEST_FAULT"
JOIN_SLICE_S = 0.5


class InjectedFault(RuntimeError):
    """Raised by a thread that `TEMPEST_FAULT` names."""


@dataclasses.dataclass(frozen=True)
class ThreadFailure:
    """Why the run stopped: a supervised thread raised `error`, or stalled (error None)."""

    thread: str
    reason: str
    error: BaseException | None = None

    def __str__(self) -> str:
        return f"thread '{self.thread}' {'failed' if self.error else 'stalled'}: {self.reason}"


class RunFailed(RuntimeError):
    """A supervised thread failed or stalled, and the run stopped."""

    def __init__(self, failure: ThreadFailure, detail: str = ""):
        super().__init__(str(failure) + (f"; {detail}" if detail else ""))
        self.failure = failure


@dataclasses.dataclass(frozen=True)
class Fault:
    thread: str
    at_beat: int = 1
    hang: bool = False


def parse_faults(spec: str) -> dict[str, Fault]:
    """`TEMPEST_FAULT`'s value as faults by thread name; ValueError names a bad entry."""
    faults = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, mode = entry.partition(":")
        if mode not in ("", "hang"):
            raise ValueError(f"{FAULT_ENV} entry {entry!r}: the mode after ':' must be 'hang'")
        name, _, beats = name.partition("@")
        if not name or (beats and not (beats.isdigit() and int(beats) >= 1)):
            raise ValueError(f"{FAULT_ENV} entry {entry!r}: expected NAME[@BEATS][:hang] with "
                             "BEATS a positive integer")
        faults[name] = Fault(name, int(beats or 1), mode == "hang")
    return faults


def _always() -> bool:
    return True


class Watch:
    """One supervised thread: its beats, and whether work is waiting for it."""

    def __init__(self, supervisor: Supervisor, name: str, busy: Callable[[], bool] | None):
        self.name = name
        self.busy = busy
        self.beats = 0
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stalled = False
        self._supervisor = supervisor
        self._fault = supervisor.faults.get(name)
        self.last_beat = supervisor.clock()

    def start(self, target: Callable[[], object]) -> None:
        """Run `target` on a daemon thread named after the watch. Keep the watch where
        `target` finds it before starting it: `target` beats it from its first step."""
        self.last_beat = self._supervisor.clock()
        self.thread = threading.Thread(target=self._run, args=(target,), name=self.name,
                                       daemon=True)
        self.thread.start()

    def beat(self) -> None:
        """The thread made progress."""
        self.beats += 1
        self.last_beat = self._supervisor.clock()
        if self._fault is not None and self.beats >= self._fault.at_beat:
            fault, self._fault = self._fault, None
            log.warning("%s: injecting a fault into thread '%s' (%s)", FAULT_ENV, self.name,
                        "it hangs" if fault.hang else "it raises")
            if fault.hang:
                self._supervisor.closed.wait()
            raise InjectedFault(f"fault injected by {FAULT_ENV}")

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end, at most `timeout` seconds, and no longer once it is
        found stalled (it may never end); whether it ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive() and not self.stalled:
            left = JOIN_SLICE_S if deadline is None else min(
                JOIN_SLICE_S, deadline - time.monotonic())
            if left <= 0:
                break
            self.thread.join(left)
        return not self.alive()

    def _run(self, target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as e:
            self.error = e
            self._supervisor.fail(ThreadFailure(self.name, f"{type(e).__name__}: {e}", e))


class Supervisor:
    """The watches of one run; `check()` (or the monitor thread) finds stalled ones."""

    def __init__(self, stall_timeout_s: float = 0.0,
                 on_failure: Callable[[ThreadFailure], None] | None = None,
                 faults: dict[str, Fault] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stall_timeout_s = stall_timeout_s
        self.on_failure = on_failure
        self.faults = faults if faults is not None else parse_faults(
            os.environ.get(FAULT_ENV, ""))
        self.clock = clock
        self.failure: ThreadFailure | None = None
        self.watches: list[Watch] = []
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self._monitor: threading.Thread | None = None

    def watch(self, name: str, busy: Callable[[], bool] | None = _always) -> Watch:
        """A new watch (start it with `.start(target)`). `busy` says whether work waits for the
        thread (a stall counts only then); None: never checked for stalls, as for a thread
        that legitimately waits for an outside event."""
        watch = Watch(self, name, busy)
        with self._lock:
            # A thread started again under its name (one per replay snapshot) replaces the
            # ended one, so the list stays as long as the run's set of threads.
            self.watches = [w for w in self.watches
                            if w.name != name or w.alive() or w.error is not None]
            self.watches.append(watch)
        return watch

    def fail(self, failure: ThreadFailure) -> None:
        """Record a failure; the first one stops the run."""
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = failure
        if failure.error is not None:
            detail = "".join(traceback.format_exception(failure.error)).rstrip()
        else:
            detail = "(no traceback: the thread is still running)"
        if not first:
            log.error("after the run's failure, also %s\n%s", failure, detail)
            return
        log.error("%s; the run stops\n%s", failure, detail)
        if self.on_failure is not None:
            self.on_failure(failure)

    def check(self) -> ThreadFailure | None:
        """Report any thread stalled longer than `stall_timeout_s`; the run's failure so far."""
        if self.stall_timeout_s > 0:
            now = self.clock()
            for watch in list(self.watches):
                idle = now - watch.last_beat
                if (idle > self.stall_timeout_s and not watch.stalled and watch.alive()
                        and watch.busy is not None and watch.busy()):
                    watch.stalled = True
                    self.fail(ThreadFailure(watch.name, f"no progress for {idle:.1f} s while "
                                            "work waits for it (limit: run.stall_timeout_s = "
                                            f"{self.stall_timeout_s:g})"))
        return self.failure

    def start_monitor(self, interval_s: float = 1.0) -> None:
        """Check for stalls every `interval_s` on a thread of its own, so a stalled thread is
        found even when the run's main loop is the one waiting on it."""
        def monitor() -> None:
            while not self.closed.wait(interval_s) and self.failure is None:
                self.check()

        self._monitor = threading.Thread(target=monitor, name="supervisor", daemon=True)
        self._monitor.start()

    def close(self) -> None:
        """Stop the monitor (the run is over)."""
        self.closed.set()
        if self._monitor is not None:
            self._monitor.join()

    def health(self) -> dict[str, dict]:
        """Each thread's state (running, failed, stalled, ended), beats and seconds since its
        last beat: for metrics records, the dashboard and benches."""
        now = self.clock()
        health = {}
        for watch in list(self.watches):
            if watch.error is not None:
                state = "failed"
            elif watch.stalled:
                state = "stalled"
            elif watch.alive():
                state = "running"
            else:
                state = "ended"
            health[watch.name] = {"state": state, "beats": watch.beats,
                                  "idle_s": round(now - watch.last_beat, 3)}
        return health
