"""`tempest-jax bench soak` end to end, briefly: the training server with learning on, two
clients, seconds instead of minutes. Checks the report's shape and that its figures agree with
each other; memory flatness needs the long run (warm-up alone is a minute there).

The replay's min_size is set above what 8 s of play fills, so the learner thread waits instead
of compiling its update (tens of seconds on a loaded 2-core machine, and shutdown waits for it).
"""

from __future__ import annotations

import json

import pytest

from tempest_jax.cli import main


@pytest.mark.timeout(600)
def test_bench_soak_short_json(capsys):
    code = main(["bench", "soak", "--seconds", "8", "--clients", "2", "--client-frames",
                 "synthetic", "--sample-s", "1", "--replay-capacity", "100000",
                 "--set", "replay.min_size=50000", "--json"])
    report = json.loads(capsys.readouterr().out)
    figures, settings = report["figures"], report["settings"]
    assert code == (0 if figures["passed"] else 1)
    assert figures["errors"] == [] and figures["drops"] == 0
    assert settings["clients"] == 2 and settings["duration_s"] == 8
    assert settings["replay_capacity"] == 100_000 and settings["replay_min_size"] == 25_000
    samples = figures["samples"]
    assert len(samples) >= 5
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert 6 <= figures["seconds"] <= 12
    assert all(s["server_rss_mb"] > 50 and s["clients_rss_mb"] > 5 for s in samples)
    assert figures["server_rss_mb_peak"] >= figures["server_rss_mb_warm"] > 0
    assert figures["server_rss_mb_end"] == samples[-1]["server_rss_mb"]
    assert figures["server_flat"] == (figures["server_growth_percent"] <= 5.0)
    # The server also answers the warm-up exchanges (1 + 2 frames) and the frames in flight
    # at the end (at most one per client).
    assert 0 < samples[-1]["frames"] <= figures["frames_served"] <= figures["client_frames"] + 5
    assert 0 < figures["transitions_stored"] <= figures["frames_served"]
    assert figures["frames_per_s"] > 0
    assert figures["thread_failures"] == 0
    assert {name: t["state"] for name, t in figures["threads"].items()} == {
        "server": "ended", "learner": "ended",
        "replay-prefetch": "ended"}
