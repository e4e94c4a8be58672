"""Plot learning curves (score, level, loss, fps over frames) of runs into a PNG.

Several runs are overlaid, one colour each, from their metrics.jsonl files.

Examples:
  tempest-jax plot runs/my-run
  tempest-jax plot runs/a runs/b --out compare.png
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", default=None,
                        help="PNG path (default: RUN_DIR/curves.png of the first run)")


def run(args: argparse.Namespace) -> int:
    from tempest_jax.plots import plot_runs

    out = args.out or Path(args.runs[0]) / "curves.png"
    try:
        path = plot_runs(args.runs, out)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"tempest-jax plot: {e}") from None
    print(path)
    return 0
