"""Multi-process training on JAX's distributed runtime, over loopback on CPU.

Every test starts separate Python processes (2 fake CPU devices each, gloo collectives) with a
free coordinator port on 127.0.0.1, bounded timeouts, and kills what is left in `finally`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tempest_jax.distributed import process_share

TESTS = Path(__file__).parent
REPO = TESTS.parent
WORKER = TESTS / "distributed_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict[str, str]:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO),
                                            os.environ.get("PYTHONPATH", "")]))


def start(argv: list[str], devices: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], env=env(devices), cwd=REPO,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> list[int]:
    """Wait for every process (killing them all past `timeout`); their exit codes."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    codes = [proc.returncode for proc in procs]
    assert all(c is not None for c in codes)
    return codes


def run_workers(mode: str, processes: int, out: Path, timeout: float = 600) -> None:
    """Run the worker as a job of `processes` (4 devices in all) and require success."""
    port = free_port()
    logs = [out / f"{mode}-{processes}-{i}.log" for i in range(processes)]
    procs = [start([str(WORKER), mode, str(port), str(processes), str(i), str(out)],
                   4 // processes, log) for i, log in enumerate(logs)]
    codes = finish(procs, logs, timeout)
    for code, log in zip(codes, logs):
        text = log.read_text()
        assert code == 0 and "WORKER-OK" in text, f"exit {code}: {text[-3000:]}"


@pytest.mark.timeout(1800)
def test_two_processes_match_one_and_checkpoints_restore_on_either(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    run_workers("update", 2, two)
    run_workers("update", 1, one)
    p0, p1 = (np.load(two / f"update-p{i}-of2.npz") for i in range(2))
    ref = np.load(one / "update-p0-of1.npz")
    params = [k for k in ref.files if "/priorities" not in k]
    for key in params:
        # Identical on both processes after every dispatch; the 4-device single process
        # reduces in another order, so equal to float tolerance.
        np.testing.assert_array_equal(p0[key], p1[key], err_msg=key)
        np.testing.assert_allclose(p0[key], ref[key], rtol=2e-5, atol=2e-6, err_msg=key)
    for step in range(3):  # each process gets back the priorities of its own rows
        both = np.concatenate([p0[f"{step}/priorities"], p1[f"{step}/priorities"]], axis=1)
        np.testing.assert_allclose(both, ref[f"{step}/priorities"], rtol=2e-5, atol=2e-6)

    # The checkpoint written by two processes restores on one and on two.
    (one / "ckpt").rename(one / "ckpt-single")
    (two / "ckpt").rename(one / "ckpt")
    run_workers("restore", 1, one)
    run_workers("restore", 2, one)
    saved = {k.split("/", 1)[1]: p0[k] for k in params if k.startswith("2/") and "loss" not in k}
    for name in ("restore-p0-of1", "restore-p0-of2", "restore-p1-of2"):
        restored = np.load(one / f"{name}.npz")
        for key, value in saved.items():
            np.testing.assert_array_equal(restored[key], value, err_msg=f"{name} {key}")
        np.testing.assert_array_equal(restored["rng"], [0, 7])


@pytest.mark.timeout(900)
def test_a_dying_process_stops_the_others_and_the_last_checkpoint_restores(tmp_path):
    port = free_port()
    logs = [tmp_path / f"endless-{i}.log" for i in range(2)]
    procs = [start([str(WORKER), "endless", str(port), "2", str(i), str(tmp_path)], 2, log)
             for i, log in enumerate(logs)]
    try:
        # A few checkpoints on disk; no deadline of its own (the first compile on a loaded
        # machine can take minutes): it waits while both processes live.
        while "SAVED 4" not in logs[0].read_text():
            assert all(proc.poll() is None for proc in procs), logs[0].read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        code = procs[0].wait(timeout=60)  # heartbeat timeout 5 s, plus slack for this machine
        waited = time.monotonic() - killed
    finally:
        finish(procs, logs, timeout=0)
    survivor = logs[0].read_text()
    assert code != 0, survivor[-3000:]
    assert "another task died" in survivor or "did not reach agreement" in survivor or (
        "Gloo" in survivor and "failed" in survivor), survivor[-3000:]
    print(f"survivor exited with {code} {waited:.1f} s after its peer was killed")
    # The last checkpoint on disk restores (in one process, on all four devices).
    run_workers("restore", 1, tmp_path)


@pytest.mark.parametrize("total", [0, 1, 7, 1_000_003])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_restored_counts_split_over_processes_add_up(total, count):
    """A resumed multi-process run splits the checkpoint's run-wide frames and transitions over
    its processes; the run-wide figure (their sum) must be the saved one, not `count` times it."""
    shares = [process_share(total, i, count) for i in range(count)]
    assert sum(shares) == total
    assert max(shares[1:], default=shares[0]) <= shares[0] <= shares[-1] + count - 1
