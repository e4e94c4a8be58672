"""Play the embedded simulator with a fixed policy and print score, level and survival.

Each game is played from a new game to its first game over (or --max-ticks). The game count,
start level and seed default to the config's [env] section. --video PATH also writes the first
--video-games games to an .mp4 or .gif, one picture per game tick.

Examples:
  tempest-jax sim play --policy expert --games 100
  tempest-jax sim play --policy random --games 100 --json
  tempest-jax sim play --policy expert --start-level 13 --json
  tempest-jax sim play --policy expert --games 1 --video expert.gif
"""

from __future__ import annotations

import argparse
import json

from tempest_jax import cli
from tempest_jax.commands.video_args import add_video_arguments, video_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    play = sub.add_parser("play", help="play N games with the expert or a random policy")
    cli.add_config_arguments(play)
    play.add_argument("--policy", choices=("expert", "random"), default="expert")
    play.add_argument("--games", type=cli.positive(), default=None,
                      help="games played in parallel (default: env.num_games)")
    play.add_argument("--start-level", type=cli.start_level, default=None,
                      help="1-based level the games start on (default: env.start_level); a "
                           "level the level select offers pays its start bonus")
    play.add_argument("--max-ticks", type=cli.positive(), default=100_000,
                      help="stop games still running after this many ticks")
    play.add_argument("--json", action="store_true", help="print one JSON object")
    add_video_arguments(play, network=False)


def run(args: argparse.Namespace) -> int:
    from tempest_jax.bench.report import table
    from tempest_jax.sim import play

    cfg = cli.config_from_args(args)
    if args.start_level is not None:
        cfg = cfg.replace(env={"start_level": args.start_level})
    games = args.games if args.games is not None else cfg.env.num_games
    video = video_request(args, (args.policy,), games, "sim play")
    recorder = play.FrameRecorder(video.games) if video is not None else None
    stats = play.play(args.policy, games, max_ticks=args.max_ticks, seed=cfg.env.seed,
                      start_level=cfg.env.start_level, recorder=recorder)
    summary = {"policy": args.policy, "start_level": cfg.env.start_level,
               **play.summary(stats)}
    if video is not None:
        from tempest_jax.video import write_video

        summary["video"] = write_video(video, {args.policy: recorder.recordings()})
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = [
        ("games (finished)", f"{summary['games']} ({summary['finished']})"),
        ("mean score", summary["mean_score"]), ("median score", summary["median_score"]),
        ("mean level reached", summary["mean_level"]),
        ("max level reached", summary["max_level"]),
        ("frames per life", summary["frames_per_life"]),
        ("mean level of a death", summary["mean_death_level"]),
    ]
    print(f"policy: {args.policy}, start level {cfg.env.start_level}, seed {cfg.env.seed}")
    print(table(rows, ("figure", "value")))
    if video is not None:
        from tempest_jax.video import describe

        print(describe(summary["video"]))
    return 0
