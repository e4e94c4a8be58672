#!/usr/bin/env python3
"""Does simulator pretraining help a MAME-mode run? Pretrain on the simulator, fine-tune in MAME
mode from it (`train --config mame-finetune --init-from`), and train a fresh MAME-mode run
(`--config mame` with the fine-tune's network) for as long as the two together; then print the
served runs' learning curves, every run's periodic greedy evaluations, and a greedy evaluation
of every final checkpoint on the same simulator games.

The MAME-mode runs are served to simulated clients (`tempest-jax sim-client`), so no ROMs are
needed; their games start on --start-level (13 by default, as the MAME presets'
start_level_min). The pretraining is a different task: its own settings (--pretrain-set, by
default twice the reward per point and a shorter ε decay) and start level
(--pretrain-start-level). Every run evaluates its greedy network every --eval-interval updates
on the same seeded games starting on --start-level, and every final checkpoint is evaluated
there. The runs follow one another, so each has the machine to itself. Durations are
wall-clock time from the start of each `train` process (compiles included); each run ends with
SIGTERM, which saves a final checkpoint.

  python scripts/transfer_experiment.py --dir runs/transfer              # 20 + 10 vs 30 minutes
  python scripts/transfer_experiment.py --dir runs/transfer --report     # print again
  python scripts/transfer_experiment.py --dir /tmp/t --pretrain-minutes 2 --finetune-minutes 2 \
      --fresh-minutes 2 --episodes 3 --max-ticks 2000 --clients 4 --eval-interval 50 \
      --set replay.capacity=100000 --set replay.min_size=1000 --set network.trunk_width=64
                                                                          # a dry run
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tempest_jax.config import load_config

SERVING = re.compile(r"serving game clients on (\S+):(\d+)")


def tempest_jax() -> str:
    return shutil.which("tempest-jax") or str(Path(sys.executable).parent / "tempest-jax")


def train(root: Path, name: str, minutes: float, clients: int, processes: int,
          start_level: int, *args: str) -> None:
    """`tempest-jax train ARGS` as run `root/name` for `minutes`; a served run (its log says
    where it serves) gets `clients` sim clients whose games start on `start_level`. Its log is
    `root/name.log`."""
    log_path = root / f"{name}.log"
    command = [tempest_jax(), "train", "--no-keys", "--set", f"run.dir={root}",
               "--set", f"run.name={name}", "--set", "dashboard.enabled=false", *args]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[1:])}", flush=True)
    end = time.monotonic() + 60 * minutes
    clients_proc = None
    with log_path.open("w") as log:
        run = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            while time.monotonic() < end and run.poll() is None:
                served = SERVING.search(log_path.read_text())
                if clients_proc is None and served:
                    clients_proc = subprocess.Popen(
                        [tempest_jax(), "sim-client", "--clients", str(clients), "--processes",
                         str(processes), "--server", f"{served[1]}:{served[2]}",
                         "--start-level", str(start_level),
                         "--seconds", str(max(end - time.monotonic(), 1.0))],
                        stdout=log, stderr=subprocess.STDOUT)
                time.sleep(1.0)
        finally:
            if clients_proc is not None:
                clients_proc.terminate()
                clients_proc.wait()
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)  # saves a final checkpoint
            code = run.wait()
    if code != 0:
        raise SystemExit(f"{name} exited with {code}; see {log_path}")


def curve(run_dir: Path, every_s: float = 60.0) -> list[dict]:
    """One metrics record per `every_s` of the run's time, from its first record."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    records = [r for r in records if "frames" in r]
    if not records:
        return []
    start, rows, next_t = records[0]["time"], [], 0.0
    for record in records:
        if record["time"] - start >= next_t or record is records[-1]:
            rows.append(dict(record, minute=(record["time"] - start) / 60))
            next_t += every_s
    return rows


def print_curves(root: Path, names: list[str]) -> None:
    columns = (("minute", "{:>6.1f}"), ("frames", "{:>11,.0f}"), ("epsilon", "{:>7.3f}"),
               ("expert_ratio", "{:>12.3f}"), ("reward_1m", "{:>9.2f}"), ("score", "{:>8,.0f}"),
               ("level", "{:>5.1f}"))
    for name in names:
        print(f"\n{name} (one row per minute of metrics)")
        print(" ".join(key.rjust(len(fmt.format(0))) for key, fmt in columns))
        for row in curve(root / name):
            print(" ".join(fmt.format(row[key]) if isinstance(row.get(key), (int, float))
                           else "-".rjust(len(fmt.format(0))) for key, fmt in columns))


def print_periodic_evaluations(root: Path, names: list[str]) -> None:
    """Each run's periodic greedy evaluations (run.eval_interval), and the best of each."""
    for name in names:
        every = [json.loads(line) for line in
                 (root / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
        records = [r for r in every if "eval_score" in r]
        first = every[0]["time"] if every else 0.0
        print(f"\n{name}: periodic greedy evaluations")
        print(f"{'minute':>6} {'update':>8} {'score':>8} {'level':>5}")
        seen = set()
        for record in records:
            if record["eval_updates"] in seen:
                continue
            seen.add(record["eval_updates"])
            print(f"{(record['time'] - first) / 60:>6.1f} {record['eval_updates']:>8,} "
                  f"{record['eval_score']:>8,.0f} {record['eval_level']:>5.2f}")
        if records:
            print(f"best: {max(r['eval_score'] for r in records):,.0f}")


def print_evaluations(root: Path, names: list[str], episodes: int, max_ticks: int,
                      start_level: int) -> None:
    print(f"\ngreedy play of each final checkpoint, {episodes} simulator games (seed 0) "
          f"starting on level {start_level}")
    print(f"{'run':>16} {'update':>8} {'frames':>12} {'mean score':>11} {'mean level':>11}")
    baselines = None
    for name in names:
        out = subprocess.run([tempest_jax(), "eval", str(root / name), "--episodes",
                              str(episodes), "--max-ticks", str(max_ticks), "--start-level",
                              str(start_level), "--json"],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        network = result["network"]
        print(f"{name:>16} {result['step']:>8,} {result['frames']:>12,} "
              f"{network['mean_score']:>11,.0f} {network['mean_level']:>11.2f}")
        baselines = result
    for policy in ("expert", "random"):
        print(f"{policy:>16} {'':>8} {'':>12} {baselines[policy]['mean_score']:>11,.0f} "
              f"{baselines[policy]['mean_level']:>11.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("runs/transfer"))
    parser.add_argument("--pretrain-minutes", type=float, default=20.0)
    parser.add_argument("--finetune-minutes", type=float, default=10.0)
    parser.add_argument("--fresh-minutes", type=float, default=None,
                        help="default: pretrain + fine-tune minutes")
    parser.add_argument("--clients", type=int, default=16, help="sim clients of a served run")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--start-level", type=int, default=13,
                        help="level the served runs' games, and the evaluation games, start on")
    parser.add_argument("--pretrain-start-level", type=int, default=None,
                        help="level the pretraining's games start on (default: --start-level)")
    parser.add_argument("--pretrain-set", dest="pretrain_overrides", action="append",
                        default=None, metavar="SECTION.KEY=VALUE",
                        help="a config value of the pretraining only (default: "
                             "reward.obj_scale=0.02 and schedule.eps_frames=150000)")
    parser.add_argument("--eval-interval", type=int, default=1000,
                        help="updates between each run's periodic greedy evaluations")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation games per run")
    parser.add_argument("--max-ticks", type=int, default=100_000,
                        help="evaluation games still running after this many ticks stop")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="a config value for every run")
    parser.add_argument("--report", action="store_true",
                        help="only print the curves and evaluations of runs already in --dir")
    args = parser.parse_args()
    root = args.dir
    names = ["sim-pretrain", "mame-finetune", "mame-fresh"]
    if not args.report:
        root.mkdir(parents=True, exist_ok=True)
        common = [arg for setting in args.overrides for arg in ("--set", setting)]
        common += ["--set", f"run.eval_interval={args.eval_interval}"]
        served = (*common, "--set", f"server.port={args.port}",
                  "--set", f"server.start_level_min={args.start_level}")
        pretrain = args.pretrain_overrides
        if pretrain is None:
            pretrain = ["reward.obj_scale=0.02", "schedule.eps_frames=150000"]
        pretrain_level = args.pretrain_start_level or args.start_level
        train(root, names[0], args.pretrain_minutes, 0, 1, 1, *common,
              "--set", f"env.start_level={pretrain_level}",
              *[arg for setting in pretrain for arg in ("--set", setting)])
        train(root, names[1], args.finetune_minutes, args.clients, args.client_processes,
              args.start_level, "--config", "mame-finetune", "--init-from",
              str(root / names[0]), *served)
        # The fresh run gets the fine-tune's network, so that only the start differs.
        network = [f"network.{key}={value}"
                   for key, value in load_config("mame-finetune").to_dict()["network"].items()]
        train(root, names[2], args.fresh_minutes or args.pretrain_minutes + args.finetune_minutes,
              args.clients, args.client_processes, args.start_level, "--config", "mame",
              *[arg for setting in network for arg in ("--set", setting)],
              *served)
    print_curves(root, names[1:])
    print_periodic_evaluations(root, names)
    print_evaluations(root, names, args.episodes, args.max_ticks, args.start_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
