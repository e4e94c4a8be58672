"""Evaluate a checkpoint: greedy play on the simulator beside the expert and a random policy.

CHECKPOINT is a run directory (runs/NAME) or its checkpoints/ directory; the latest checkpoint
and the config it was saved with are used. Every policy plays the same games (same seed) from
a new game to its first game over.

Examples:
  tempest-jax eval runs/20261123-201500 --episodes 100
  tempest-jax eval runs/my-run --episodes 100 --seed 3 --json
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run or checkpoints directory")
    parser.add_argument("--episodes", type=int, default=100, help="games per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-ticks", type=int, default=100_000,
                        help="stop games still running after this many ticks")
    parser.add_argument("--start-level", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from tempest_jax.bench.report import table
    from tempest_jax.evaluate import POLICY_ORDER, evaluate

    if args.episodes < 1:
        raise SystemExit("tempest-jax eval: --episodes must be >= 1")
    results = evaluate(args.checkpoint, args.episodes, seed=args.seed, max_ticks=args.max_ticks,
                       start_level=args.start_level, show_progress=not args.json)
    if args.json:
        print(json.dumps(results))
        return 0
    figures = (("mean score", "mean_score"), ("median score", "median_score"),
               ("max score", "max_score"), ("mean level reached", "mean_level"),
               ("max level reached", "max_level"), ("episode length (frames per life)",
                                                    "frames_per_life"),
               ("games over / played", None))
    rows = []
    for title, key in figures:
        if key is None:
            rows.append((title, *(f"{results[p]['finished']}/{results[p]['games']}"
                                  for p in POLICY_ORDER)))
        else:
            rows.append((title, *(results[p][key] for p in POLICY_ORDER)))
    print(f"checkpoint {results['checkpoint']} (update {results['step']:,}, "
          f"{results['frames']:,} frames), {args.episodes} games, seed {args.seed}")
    print(table(rows, ("figure", *POLICY_ORDER)))
    return 0
