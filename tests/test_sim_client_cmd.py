"""`tempest-jax sim-client` without --ticks or --seconds plays until Ctrl-C, like the MAME
clients it stands in for, then reports what it played."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_server import RecordingSink, expert_policy

from tempest_jax.config import ServerConfig
from tempest_jax.server import GameServer

pytestmark = pytest.mark.timeout(600)

FRAMES_BEFORE_CTRL_C = 200


@pytest.mark.parametrize("processes", [1, 2])
def test_sim_client_plays_until_ctrl_c_and_reports_what_it_played(processes):
    srv = GameServer(ServerConfig(port=0, max_clients=4, batch_wait_ms=0.5), expert_policy,
                     RecordingSink())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.address
    # A session of its own: Ctrl-C in a terminal reaches the whole process group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tempest_jax.cli", "sim-client", "--clients", "2",
         "--processes", str(processes), "--server", f"{host}:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 500  # starting JAX and compiling the simulator
        while srv.stats.frames < FRAMES_BEFORE_CTRL_C:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the clients did not play"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        srv.stop()
        thread.join(timeout=10)
    assert proc.returncode == 0, err
    played = re.fullmatch(r"2 clients: ([\d,]+) frames in [\d.]+ s \([\d,]+ frames/s\)\n", out)
    assert played, out
    # Every frame counted got its reply; each process may have one exchange cut short.
    frames = int(played.group(1).replace(",", ""))
    assert FRAMES_BEFORE_CTRL_C - 2 <= frames <= srv.stats.frames
