r"""Train a network: on the embedded simulator (default) or serving MAME/sim clients over TCP.

Examples:
  tempest-jax train                                  # simulator, the sim preset
  tempest-jax train --config smoke --frames 20000    # a short run
  tempest-jax train --env mame --set server.port=9999
  TEMPEST_TOKEN=secret tempest-jax train --env mame --set server.host=0.0.0.0 \
      --allow 10.0.0.0/8,192.168.1.0/24             # MAME clients on the LAN, with a token
  tempest-jax train --resume runs/20261123-201500    # continue a run (its own config) from
                                                     # its newest complete checkpoint
  tempest-jax train --config mame-finetune --init-from runs/sim-pretrain
                                                     # a new run whose network starts from
                                                     # another run's newest complete checkpoint
  tempest-jax train --distributed --coordinator 10.0.0.1:8476 --num-processes 2 \
      --process-id 0 --set run.name=job1             # one process of a multi-host job

A run directory (run.dir/run.name, default runs/TIMESTAMP) holds config.toml, metrics.jsonl
and checkpoints/. Ctrl-C or SIGTERM saves a checkpoint and exits cleanly. If any thread of the
run fails, or stalls for run.stall_timeout_s with work waiting, the run stops: it names the
thread and the error, saves a final checkpoint when the learner state is sound, and exits 1.
From a terminal, keys control the run (? lists them); the dashboard (dashboard.enabled) serves
live charts and a live picture of any game or client (the "game view" button) at
http://127.0.0.1:8765/ by default. --set run.tensorboard=true also writes every metric to
TensorBoard event files in the run directory (tensorboard --logdir runs); --set
run.wandb_project=NAME logs them to Weights & Biases (needs the wandb package).

--init-from RUN_DIR[:best|latest|STEP] starts a new run (its own directory, config, counters
at zero, schedules from the start, an empty replay) whose network, and target network, are that
checkpoint's: latest (the default) is the newest complete one, best the one in
RUN_DIR/checkpoints/best, STEP that update step. The learning-rate schedule starts again at
update 0; --init-optimizer also takes the checkpoint's optimizer state (Adam's moments). A
network of another shape is refused, naming the parameters that differ. The run records the
checkpoint it started from (its log, its checkpoints' counters, `tempest-jax eval`).

With --distributed every host runs this command (see README, "Multi-host training"): process 0
writes the run directory's files and serves the dashboard; run.dir must be storage every
process sees. On --resume the process layout comes from this command line, not the saved run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from tempest_jax import cli
from tempest_jax.config import load_config
from tempest_jax.rundir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_config_arguments(parser)
    parser.add_argument("--env", choices=("sim", "mame"),
                        help="frame source (default: env.source of the config)")
    parser.add_argument("--allow", metavar="NETWORKS",
                        help="comma-separated client networks the game server accepts, e.g. "
                             "10.0.0.0/8,192.168.1.0/24 (server.allow; default loopback only). "
                             "Clients must also send the token when server.token or "
                             "$TEMPEST_TOKEN is set")
    parser.add_argument("--frames", type=cli.positive(), default=None, metavar="N",
                        help="train for N frames in this invocation (default: run.total_frames)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its newest complete checkpoint "
                            "(torn ones are reported and set aside), with its saved config "
                            "(plus any --set overrides); tokens are not saved, so give "
                            "server.token / dashboard.token (or $TEMPEST_TOKEN) again")
    start.add_argument("--init-from", metavar="RUN_DIR[:best|latest|STEP]",
                       help="start a new run (this command's config, counters at zero) whose "
                            "network is that checkpoint's (run.init_from; default latest: the "
                            "newest complete one)")
    parser.add_argument("--init-optimizer", action="store_true",
                        help="with --init-from: take the checkpoint's optimizer state (Adam's "
                             "moments) too (run.init_optimizer)")
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-process job (distributed.enabled); settings not given "
                             "are detected on Cloud TPU VMs, SLURM and Open MPI")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="process 0's coordinator address (distributed.coordinator_address)")
    parser.add_argument("--num-processes", type=int, metavar="N",
                        help="processes in the job (distributed.num_processes)")
    parser.add_argument("--process-id", type=int, metavar="I",
                        help="this process's index, 0..N-1 (distributed.process_id)")
    parser.add_argument("--no-keys", action="store_true",
                        help="ignore the keyboard (by default, when stdin is a terminal, keys "
                             "control the run: ? lists them)")


def distributed_overrides(args: argparse.Namespace) -> list[str]:
    flags = {"enabled": "true" if args.distributed else None,
             "coordinator_address": args.coordinator, "num_processes": args.num_processes,
             "process_id": args.process_id}
    return [f"distributed.{key}={value}" for key, value in flags.items() if value is not None]


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + distributed_overrides(args)
    if args.env:
        overrides.append(f"env.source={args.env}")
    if args.allow:
        overrides.append(f"server.allow={args.allow}")
    if args.init_from:
        overrides.append(f"run.init_from={args.init_from}")
    if args.init_optimizer:
        overrides.append("run.init_optimizer=true")
    if args.resume:
        try:
            run_config = RunDir.open(args.resume).config_file
        except FileNotFoundError as e:
            raise SystemExit(f"tempest-jax train: --resume: {e}") from None
        cfg = load_config(str(run_config), overrides)
        # The process layout belongs to this invocation, not to the run that was saved.
        cfg = dataclasses.replace(cfg, distributed=load_config(None, [
            o for o in overrides if o.strip().startswith("distributed.")]).distributed)
    else:
        cfg = load_config(args.config, overrides)
    # Tokens are not saved with a run: a resumed run must be given them again, asked here
    # before anything starts.
    if cfg.env.source == "mame":
        cfg.server.resolved_token()
    if cfg.dashboard.enabled:
        cfg.dashboard.resolved_token()

    process = cfg.distributed.process_id
    prefix = f"p{process} " if cfg.distributed.enabled and process >= 0 else ""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {prefix}%(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "orbax", "jax"):  # per-file progress of every checkpoint save
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Before anything touches a JAX device (importing the trainer may).
    from tempest_jax import distributed
    try:
        distributed.initialize(cfg.distributed)
    except distributed.DistributedError as e:
        print(f"tempest-jax: {e}", file=sys.stderr)
        return 2
    import jax

    from tempest_jax.keyboard import KeyboardControls
    from tempest_jax.supervisor import RunFailed
    from tempest_jax.trackers import check_trackers
    from tempest_jax.train import Trainer

    check_trackers(cfg)  # a tracker's missing package, named before a run directory is made
    if cfg.run.init_from and not args.resume:
        from tempest_jax.learner import make_learner
        from tempest_jax.resume import init_source

        init_source(cfg, make_learner(cfg))  # a source that does not fit leaves no run behind
    if args.resume:
        run_dir = RunDir.open(args.resume)
    elif jax.process_count() == 1:
        run_dir = RunDir.create(cfg)
    else:
        run_dir = distributed.shared_run_dir(cfg)
    logging.getLogger(__name__).info("run directory: %s", run_dir.path)
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
    try:
        with KeyboardControls(trainer.controls, trainer.status, trainer.supervisor,
                              enabled=distributed.is_primary() and not args.no_keys):
            status = trainer.run(frames=args.frames)
    except RunFailed as e:
        print(f"tempest-jax: the run failed: {e}", file=sys.stderr)
        return 1
    # Leave the job together (a no-op with one process), before interpreter teardown.
    distributed.shutdown()
    return status
