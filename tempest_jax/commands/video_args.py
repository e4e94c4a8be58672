"""The --video options shared by `eval` and `sim play`."""

from __future__ import annotations

import argparse
from pathlib import Path

VIDEO_POLICIES = ("network", "expert", "both")


def add_video_arguments(parser: argparse.ArgumentParser, network: bool) -> None:
    """--video and its settings; `network` adds --video-policy and --no-video-q (eval)."""
    parser.add_argument("--video", metavar="PATH", type=Path,
                        help="also write the first game(s) to PATH (.mp4 or .gif): one "
                             "picture per game tick")
    if network:
        parser.add_argument("--video-policy", choices=VIDEO_POLICIES, default="network",
                            help="who plays in the video: the network, the expert, or both "
                                 "side by side on the same seed (default network)")
        parser.add_argument("--no-video-q", dest="video_q", action="store_false",
                            help="leave out the network's top actions and Q-values")
    parser.add_argument("--video-games", type=int, default=1, metavar="N",
                        help="games in the video, one after another (default 1)")
    parser.add_argument("--video-fps", type=int, default=20, metavar="N",
                        help="game ticks per second of video (default 20, about the "
                             "arcade's speed)")
    parser.add_argument("--video-size", type=int, default=256, metavar="PIXELS",
                        help="picture width and height (default 256)")


def video_request(args: argparse.Namespace, policies: tuple[str, ...], games: int,
                  command: str):
    """The VideoRequest of the parsed arguments, or None without --video. Exits with a
    message when the options do not fit."""
    if args.video is None:
        return None
    from tempest_jax.video import VideoRequest

    if args.video_games > games:
        raise SystemExit(f"tempest-jax {command}: --video-games {args.video_games} is more "
                         f"than the {games} games played")
    try:
        return VideoRequest(args.video, policies=policies, games=args.video_games,
                            fps=args.video_fps, size=args.video_size,
                            q_overlay=getattr(args, "video_q", False))
    except ValueError as e:
        raise SystemExit(f"tempest-jax {command}: {e}") from None
