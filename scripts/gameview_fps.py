"""Training frames/s with the dashboard's game view polled and not, in one run.

    python scripts/gameview_fps.py [--config sim] [--windows 8] [--window-s 30] [--set K=V ...]

Starts `tempest-jax train` with the dashboard on, waits until the learner has stepped, then
alternates windows of not polling and of polling /api/frame?game=0 every 0.2 s (as the open
panel does), and prints the mean frames/s of the metrics records written inside each kind of
window. Alternating in one run keeps slow drifts (replay filling, other load on the machine)
out of the comparison. The run is stopped at the end, and on any error.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

POLL_S = 0.2
LOG_INTERVAL_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="sim")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        sets = [f"run.dir={runs}", "run.name=fps", "dashboard.enabled=true", "dashboard.port=0",
                f"run.log_interval_s={LOG_INTERVAL_S}", *args.overrides]
        command = [sys.executable, "-m", "tempest_jax.cli", "train", "--config", args.config,
                   "--frames", "1000000000", "--no-keys",
                   *(arg for setting in sets for arg in ("--set", setting))]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)
        try:
            return measure(proc, Path(runs) / "fps" / "metrics.jsonl", args)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


def measure(proc: subprocess.Popen, metrics: Path, args) -> int:
    found: list[str] = []
    lines = threading.Thread(target=lambda: [found.extend(re.findall(
        r"dashboard: (http://\S+/)", line)) for line in proc.stdout], daemon=True)
    lines.start()
    while not (found and records(metrics) and records(metrics)[-1].get("updates", 0) > 0):
        if proc.poll() is not None:
            raise SystemExit(f"train exited with status {proc.returncode}")
        time.sleep(1.0)
    api = found[0] + "api/frame?game=0"
    fps: dict[bool, list[float]] = {False: [], True: []}
    answer_s: list[float] = []
    for window in range(args.windows):
        polling = window % 2 == 1
        start = time.time()
        while time.time() < start + args.window_s:
            if polling:
                asked = time.perf_counter()
                with urllib.request.urlopen(api, timeout=30) as response:
                    response.read()
                answer_s.append(time.perf_counter() - asked)
            time.sleep(POLL_S if polling else 0.5)
        end = time.time()
        # Records whose whole interval lies inside the window.
        inside = [r["fps"] for r in records(metrics)
                  if start + LOG_INTERVAL_S < r["time"] <= end and "fps" in r]
        fps[polling].extend(inside)
        print(f"window {window}: {'polling' if polling else 'closed '} "
              f"{statistics.fmean(inside) if inside else float('nan'):10,.0f} frames/s "
              f"({len(inside)} records)", flush=True)
    for polling in (False, True):
        values = fps[polling]
        print(f"{'panel open (polling)' if polling else 'panel closed        '}: mean "
              f"{statistics.fmean(values):,.0f} frames/s, median {statistics.median(values):,.0f}"
              f", stdev {statistics.stdev(values):,.0f} over {len(values)} records")
    print(f"/api/frame answered {len(answer_s)} times, median "
          f"{1000 * statistics.median(answer_s):.1f} ms")
    return 0


def records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())
