"""The supervisor of a run's threads: failures and stalls are found, named and reported once."""

from __future__ import annotations

import logging
import threading

import pytest

from tempest_jax.supervisor import (
    Fault,
    InjectedFault,
    RunFailed,
    Supervisor,
    ThreadFailure,
    parse_faults,
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_exception_in_a_thread_is_the_runs_failure_and_stops_it_once(caplog):
    stopped = []
    supervisor = Supervisor(on_failure=stopped.append, faults={})
    first, second = supervisor.watch("replay-prefetch"), supervisor.watch("learner")
    with caplog.at_level(logging.ERROR):
        first.start(lambda: {}["missing"])
        assert first.join(timeout=30)
        second.start(lambda: 1 / 0)
        assert second.join(timeout=30)
    assert [f.thread for f in stopped] == ["replay-prefetch"]
    failure = supervisor.failure
    assert failure.thread == "replay-prefetch" and isinstance(failure.error, KeyError)
    assert str(failure) == "thread 'replay-prefetch' failed: KeyError: 'missing'"
    assert "thread 'replay-prefetch' failed: KeyError: 'missing'; the run stops" in caplog.text
    assert "after the run's failure, also thread 'learner' failed: ZeroDivisionError" in (
        caplog.text)
    health = supervisor.health()
    assert health["replay-prefetch"]["state"] == health["learner"]["state"] == "failed"
    assert str(RunFailed(failure, "the newest checkpoint is 7")) == (
        "thread 'replay-prefetch' failed: KeyError: 'missing'; the newest checkpoint is 7")


def test_a_busy_thread_without_progress_is_reported_stalled_and_an_idle_one_is_not():
    clock = FakeClock()
    stopped = []
    supervisor = Supervisor(stall_timeout_s=10.0, on_failure=stopped.append, faults={},
                            clock=clock)
    release = threading.Event()
    work_waiting = threading.Event()
    busy = supervisor.watch("server", busy=work_waiting.is_set)
    waits_outside = supervisor.watch("keyboard", busy=None)
    try:
        busy.start(release.wait)
        waits_outside.start(release.wait)
        clock.now += 60.0
        assert supervisor.check() is None, "nothing waits for it: idle, not stalled"
        work_waiting.set()
        clock.now += 10.0
        busy.beat()
        clock.now += 9.9
        assert supervisor.check() is None, "a beat resets the clock"
        clock.now += 0.2
        failure = supervisor.check()
        assert failure == ThreadFailure("server", "no progress for 10.1 s while work waits "
                                        "for it (limit: run.stall_timeout_s = 10)")
        assert str(failure).startswith("thread 'server' stalled: no progress for 10.1 s")
        assert stopped == [failure]
        assert supervisor.check() is failure and stopped == [failure], "reported once"
        health = supervisor.health()
        assert health["server"]["state"] == "stalled"
        assert health["keyboard"] == {"state": "running", "beats": 0, "idle_s": 80.1}
        assert busy.join(timeout=None) is False, "a stalled thread is not waited for"
    finally:
        release.set()
    busy.thread.join(30)
    assert waits_outside.join(timeout=30) and not busy.alive()
    assert supervisor.health()["keyboard"]["state"] == "ended"


def test_the_monitor_thread_finds_a_stall_on_its_own():
    stalled = threading.Event()
    supervisor = Supervisor(stall_timeout_s=0.2, on_failure=lambda f: stalled.set(), faults={})
    release = threading.Event()
    watch = supervisor.watch("learner")
    watch.start(release.wait)
    supervisor.start_monitor(interval_s=0.05)
    try:
        assert stalled.wait(60)
    finally:
        release.set()
        supervisor.close()
    assert supervisor.failure.thread == "learner" and supervisor.failure.error is None


@pytest.mark.parametrize(("spec", "faults"), [
    ("", {}),
    ("learner", {"learner": Fault("learner")}),
    ("server@3, replay-prefetch:hang", {"server": Fault("server", 3),
                                        "replay-prefetch": Fault("replay-prefetch", 1, True)}),
])
def test_fault_specs(spec, faults):
    assert parse_faults(spec) == faults


@pytest.mark.parametrize("spec", ["learner:crash", "@3", "learner@0", "learner@x"])
def test_bad_fault_specs_are_refused(spec):
    with pytest.raises(ValueError, match="TEMPEST_FAULT entry"):
        parse_faults(spec)


def test_an_injected_fault_raises_at_its_beat(monkeypatch):
    monkeypatch.setenv("TEMPEST_FAULT", "prefetch@3")
    supervisor = Supervisor()
    beats = []

    def work():
        while True:
            watch.beat()
            beats.append(1)

    watch = supervisor.watch("prefetch")
    watch.start(work)
    assert watch.join(timeout=30)
    assert len(beats) == 2
    assert isinstance(supervisor.failure.error, InjectedFault)
    assert str(supervisor.failure) == (
        "thread 'prefetch' failed: InjectedFault: fault injected by TEMPEST_FAULT")


def test_an_injected_hang_is_found_as_a_stall():
    clock = FakeClock()
    supervisor = Supervisor(stall_timeout_s=5.0, faults=parse_faults("server:hang"), clock=clock)
    watch = supervisor.watch("server")
    hanging = threading.Event()

    def work():
        hanging.set()
        watch.beat()

    watch.start(work)
    assert hanging.wait(30)
    clock.now += 6.0
    assert supervisor.check().thread == "server"
    assert watch.alive()
    supervisor.close()  # the hang ends with the run
    watch.thread.join(30)
    assert not watch.alive() and isinstance(watch.error, InjectedFault)


def test_a_thread_restarted_under_its_name_replaces_the_ended_one():
    supervisor = Supervisor(faults={})
    for _ in range(3):
        watch = supervisor.watch("replay-snapshot", busy=None)
        watch.start(lambda: None)
        assert watch.join(timeout=30)
    assert [w.name for w in supervisor.watches] == ["replay-snapshot"]
