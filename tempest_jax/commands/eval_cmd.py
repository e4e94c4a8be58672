"""Evaluate a checkpoint: greedy play beside the expert and a random policy.

CHECKPOINT is a run directory (runs/NAME) or its checkpoints/ directory. --checkpoint picks
which of its checkpoints: latest (default: the newest complete one; torn ones, from a crash
during a save, are reported and left in place), best (the best-scoring checkpoint of the run's
periodic evaluation, run.eval_interval) or a step number. The config it was saved with is used.

--env sim (default): every policy plays the same simulator games (same seed) from a new game to
its first game over.
--env mame: a game server (server.* settings of the checkpoint's config, or --set) serves the
network, then the expert, then a random policy to the MAME (or sim) clients that connect; each
policy plays --episodes whole games, counted from a game's start to its game over.

--video PATH (with --env sim) also writes the first --video-games of those games to an .mp4 or
.gif, one picture per game tick: the network (greedy, with its top three actions and their
Q-values), the expert, or both side by side on the same games (--video-policy).

Examples:
  tempest-jax eval runs/20261123-201500 --episodes 100
  tempest-jax eval runs/my-run --episodes 100 --seed 3 --json
  tempest-jax eval runs/my-run --env mame --episodes 20 --set server.port=9999
  tempest-jax eval runs/my-run --episodes 1 --video game.mp4 --video-policy both
"""

from __future__ import annotations

import argparse
import json

from tempest_jax.cli import positive, start_level
from tempest_jax.commands.video_args import add_video_arguments, video_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run or checkpoints directory")
    parser.add_argument("--checkpoint", dest="which", default="latest",
                        metavar="best|latest|STEP",
                        help="which checkpoint of the run (default: latest)")
    parser.add_argument("--episodes", type=positive(), default=100, help="games per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-ticks", type=positive(), default=100_000,
                        help="stop games still running after this many ticks")
    parser.add_argument("--start-level", type=start_level, default=1)
    parser.add_argument("--env", choices=("sim", "mame"), default="sim",
                        help="simulator games (default) or served to MAME/sim clients")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="with --env mame: server settings, e.g. server.port=9999")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="with --env mame: give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_video_arguments(parser, network=True)


def run(args: argparse.Namespace) -> int:
    from tempest_jax.bench.report import table
    from tempest_jax.evaluate import POLICY_ORDER, evaluate, evaluate_served

    if args.env == "mame" and args.video is not None:
        raise SystemExit("tempest-jax eval: --video applies to --env sim only")
    if args.env == "sim" and args.overrides:
        raise SystemExit("tempest-jax eval: --set applies to --env mame only")
    try:
        if args.env == "mame":
            results = evaluate_served(args.checkpoint, args.episodes, _server_config(args),
                                      seed=args.seed, timeout_s=args.timeout,
                                      show_progress=not args.json, checkpoint=args.which)
        else:
            from tempest_jax.video import POLICY_CHOICES

            video = video_request(args, POLICY_CHOICES[args.video_policy], args.episodes,
                                  "eval")
            results = evaluate(args.checkpoint, args.episodes, seed=args.seed,
                               max_ticks=args.max_ticks, start_level=args.start_level,
                               show_progress=not args.json, video=video,
                               checkpoint=args.which)
    except (FileNotFoundError, TimeoutError) as e:  # no such run or checkpoint; no clients
        raise SystemExit(f"tempest-jax eval: {e}") from None
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
    where = f"seed {args.seed}" if args.env == "sim" else "served to game clients"
    started = f", network started from {results['init_from']}" if results["init_from"] else ""
    print(f"checkpoint {results['checkpoint']} ({results['which']}: update {results['step']:,}, "
          f"{results['frames']:,} frames{started}), {args.episodes} games, {where}")
    print(table(rows, ("figure", *POLICY_ORDER)))
    if "video" in results:
        from tempest_jax.video import describe

        print(describe(results["video"]))
    return 0


def _server_config(args: argparse.Namespace):
    """The checkpoint's server settings with --set overrides (server.* keys only)."""
    from tempest_jax.checkpoint import Checkpointer
    from tempest_jax.config import parse_override
    from tempest_jax.rundir import checkpoint_dir

    checkpointer = Checkpointer(checkpoint_dir(args.checkpoint), async_save=False)
    try:
        cfg = checkpointer.saved_config()
    finally:
        checkpointer.close()
    changes = {}
    for text in args.overrides:
        section, key, value = parse_override(text)
        if section != "server":
            raise SystemExit(f"tempest-jax eval: --set {text}: only server.* keys apply")
        changes[key] = value
    return cfg.replace(server=changes).server
