"""`tempest-jax bench server`, briefly, on the smoke network: both phases run, the learning-on
points are measured after the learner's first step (so they time learning, not its
compilation), and the report's figures agree with each other."""

from __future__ import annotations

import json
import multiprocessing
import socket

import pytest

from tempest_jax.bench.server_bench import _run_clients
from tempest_jax.cli import main


@pytest.mark.timeout(180)
def test_bench_server_short_json(capsys):
    code = main(["bench", "server", "--config", "smoke", "--clients", "1", "2",
                 "--seconds", "0.5", "--json"])
    report = json.loads(capsys.readouterr().out)
    figures, settings = report["figures"], report["settings"]
    assert code == 0
    assert settings["clients"] == [1, 2] and settings["learning"] == "both"
    assert settings["learner_warmup_s"] > 0
    for clients in (1, 2):
        for learning in ("off", "on"):
            tag = f"c{clients}_learn_{learning}"
            assert figures[f"frames_per_s_{tag}"] > 0
            assert 0 < figures[f"latency_ms_p50_{tag}"] <= figures[f"latency_ms_p99_{tag}"]
        assert figures[f"updates_c{clients}_learn_off"] == 0
        # The same run's inference ceiling for that many clients, and the share of it served.
        ceiling = figures[f"ceiling_frames_per_s_c{clients}"]
        assert ceiling > 0
        assert figures[f"ceiling_share_c{clients}"] == pytest.approx(
            figures[f"frames_per_s_c{clients}_learn_off"] / ceiling)
        # The serving alone (a policy that costs nothing), and the bound the two set together.
        server_only = figures[f"server_only_frames_per_s_c{clients}"]
        assert server_only > 0
        assert figures[f"serial_bound_frames_per_s_c{clients}"] == pytest.approx(
            1 / (1 / ceiling + 1 / server_only))
    # The smoke preset learns with no replay-ratio limit: it steps while the clients play.
    assert figures["updates_c1_learn_on"] + figures["updates_c2_learn_on"] > 0
    assert figures["frames_per_s"] == max(v for k, v in figures.items()
                                          if k.startswith("frames_per_s_"))
    assert not any(k.startswith("ceiling") and "learn_on" in k for k in figures)
    assert sorted(k for k in figures if k.startswith("server_only")) == [
        "server_only_frames_per_s_c1", "server_only_frames_per_s_c2"]


@pytest.mark.timeout(300)
def test_a_client_process_that_dies_ends_the_point_with_an_error_at_once():
    """The clients run in a process of their own; one that fails (here: nothing listens at the
    address) is reported as soon as it has exited, not after the point's 300 s grace."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = unused.getsockname()
    ctx = multiprocessing.get_context("spawn")
    with pytest.raises(RuntimeError, match=r"the process of 1 lockstep clients reported "
                                           r"nothing \(exited with code 1\)"):
        _run_clients(ctx, address, [b""], clients=1, seconds=0.5)

