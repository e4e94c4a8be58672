"""scripts/device_check.sh --cpu-dry-run: every step runs at tiny sizes on CPU and leaves its
JSON, the training run's metrics and the summary in the output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Figures every bench's JSON must carry at the dry run's sizes.
EXPECTED_FIGURES = {
    "learner": ("updates_per_s_b32_k1", "compile_s_b32_k1", "updates_per_s", "params"),
    "inference": ("act_ms_b4", "forward_ms_b4", "greedy_ms_b4", "act_overhead_ms_b4",
                  "ceiling_frames_per_s_b4"),
    "sim": ("steps_per_s_4", "steps_per_s", "kernels_4", "hlo_instructions_4"),
    "server": ("frames_per_s_c4_learn_off", "latency_ms_p50_c4_learn_off",
               "latency_ms_p99_c4_learn_off", "ceiling_frames_per_s_c4", "ceiling_share_c4",
               "server_only_frames_per_s_c4", "serial_bound_frames_per_s_c4"),
}


@pytest.mark.timeout(1800)
def test_cpu_dry_run_writes_every_result(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.Popen(["bash", "scripts/device_check.sh", "--cpu-dry-run", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=1700)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = (out / "steps.log").read_text() if (out / "steps.log").exists() else ""
    assert proc.returncode == 0, output + "\n--- steps.log ---\n" + log[-5000:]

    for bench, keys in EXPECTED_FIGURES.items():
        result = json.loads((out / f"{bench}.json").read_text())
        assert result["bench"] == bench
        assert all("cpu" in device.lower() for device in result["machine"]["devices"])
        for key in keys:
            assert result["figures"][key] > 0, (bench, key)

    # The sim and learner benches log each point as it is measured, so a step stopped at its
    # time limit still leaves what it did.
    assert "bench sim: 4 games:" in log and "bench learner: batch 32 K 1:" in log

    records = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert records and records[-1]["frames"] > 0
    assert any("fps" in r for r in records)

    summary = (out / "summary.txt").read_text()
    for step in ("jax", *EXPECTED_FIGURES, "train"):
        assert any(line.split()[:2] == [step, "ok"] for line in summary.splitlines()), step
    assert (out / "environment.txt").read_text().count("backend: cpu") == 1
    # Everything the script writes is in the output folder, 8 files at most (what a device
    # run can bring back).
    assert len(list(out.iterdir())) <= 8
