"""Train a network: on the embedded simulator (default) or serving MAME/sim clients over TCP.

Examples:
  tempest-jax train                                  # simulator, configs/sim.toml
  tempest-jax train --config smoke --frames 20000    # a short run
  tempest-jax train --env mame --set server.port=9999
  tempest-jax train --resume runs/20261123-201500    # continue a run (its own config)

A run directory (run.dir/run.name, default runs/TIMESTAMP) holds config.toml, metrics.jsonl
and checkpoints/. Ctrl-C or SIGTERM saves a checkpoint and exits cleanly.
"""

from __future__ import annotations

import argparse
import logging

from tempest_jax import cli
from tempest_jax.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_config_arguments(parser)
    parser.add_argument("--env", choices=("sim", "mame"),
                        help="frame source (default: env.source of the config)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="train for N frames in this invocation (default: run.total_frames)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint, with its "
                             "saved config (plus any --set overrides)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "orbax", "jax"):  # per-file progress of every checkpoint save
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from tempest_jax.metrics import RunDir
    from tempest_jax.train import Trainer

    overrides = list(args.overrides)
    if args.env:
        overrides.append(f"env.source={args.env}")
    if args.resume:
        run_dir = RunDir.open(args.resume)
        cfg = load_config(str(run_dir.config_file), overrides)
    else:
        cfg = load_config(args.config, overrides)
        run_dir = RunDir.create(cfg)
    logging.getLogger(__name__).info("run directory: %s", run_dir.path)
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
    return trainer.run(frames=args.frames)
