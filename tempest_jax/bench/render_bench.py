"""Game pictures per second: the renderer alone, with the Q-value overlay, and into a video.

The frames are real simulator frames: the expert playing from several start levels (closed and
open tubes), recorded tick by tick. Figures: frames_per_s (state + header to an RGB picture),
frames_per_s_overlay (with the top-three Q-value rows, the chosen action and a label),
frames_per_s_mp4 and frames_per_s_gif (drawn and encoded into a file by ffmpeg, which runs
beside Python in its own process).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tempest_jax.cli import positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="picture width and height")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 12],
                        help="start levels of the recorded games (default: 1 8 12)")
    parser.add_argument("--ticks", type=positive(), default=500,
                        help="ticks recorded per start level (whole chunks of 500)")
    parser.add_argument("--seconds", type=positive(float), default=1.0,
                        help="minimum timed seconds per round (best of 3 rounds)")


def recorded_frames(levels: list[int], ticks: int) -> list[tuple]:
    """(state, header, action) of the expert's first `ticks` ticks from each start level."""
    from tempest_jax.sim import play

    frames = []
    for level in levels:
        recorder = play.FrameRecorder(1)
        play.play("expert", 1, max_ticks=ticks, start_level=level, recorder=recorder)
        game = recorder.recordings()[0]
        frames += [(game.state[t], game.header_at(t), int(game.action[t]))
                   for t in range(len(game))]
    return frames


def measure(args: argparse.Namespace):
    import numpy as np

    from tempest_jax.bench.report import best_rate, table
    from tempest_jax.render import Renderer
    from tempest_jax.video import VideoWriter

    renderer = Renderer(args.size)
    frames = recorded_frames(args.levels, args.ticks)
    q_values = np.random.default_rng(0).normal(size=44)

    def plain() -> int:
        for state, header, _ in frames:
            renderer.rgb(state, header)
        return len(frames)

    def overlay() -> int:
        for state, header, action in frames:
            renderer.rgb(state, header, action=action, q_values=q_values, label="NETWORK")
        return len(frames)

    rates = {"frames_per_s": best_rate(plain, args.seconds),
             "frames_per_s_overlay": best_rate(overlay, args.seconds)}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("mp4", "gif"):
            def encode(suffix=suffix) -> int:
                path = Path(tmp) / f"bench.{suffix}"
                with VideoWriter(path, args.size, args.size) as writer:
                    for state, header, action in frames:
                        writer.write(renderer.rgb(state, header, action=action))
                return len(frames)

            rates[f"frames_per_s_{suffix}"] = best_rate(encode, args.seconds, repeats=1)
    settings = {"size": args.size, "levels": args.levels, "frames": len(frames),
                "seconds": args.seconds}
    text = table([("state + header -> RGB picture", rates["frames_per_s"]),
                  ("... with Q-value rows, action and label", rates["frames_per_s_overlay"]),
                  ("drawn and encoded to .mp4 (H.264)", rates["frames_per_s_mp4"]),
                  ("drawn and encoded to .gif", rates["frames_per_s_gif"])],
                 (f"{args.size}x{args.size} pictures of {len(frames)} simulator frames",
                  "frames/s"))
    return rates, settings, text
