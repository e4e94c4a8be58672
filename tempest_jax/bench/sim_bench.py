"""Simulator throughput: env steps/s (game tick + RAM image + frame extraction).

Measures `tempest_jax.sim.step` (jitted, vmapped) at several numbers of parallel games, with
games in play (expert actions, so the mix of states is a realistic one). Figures:
steps_per_s_N for each size N and steps_per_s, the best of them; compile_s_N, the seconds
the first `sim.step` at size N takes (tracing, compiling and running it once); kernels_N and
hlo_instructions_N, the size of the program that call compiled (`sim.compiling.program_size`),
which unlike the seconds do not move with the machine's load.
"""

from __future__ import annotations

import argparse
import time

from tempest_jax.cli import non_negative, positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--games", type=positive(), nargs="+", default=[1, 256, 4096],
                        help="parallel game counts to measure (default: 1 256 4096)")
    parser.add_argument("--seconds", type=positive(float), default=1.0,
                        help="minimum timed seconds per round (best of 3 rounds)")
    parser.add_argument("--warmup-ticks", type=non_negative(), default=300,
                        help="ticks played before timing, so games are mid-level")


def measure(args: argparse.Namespace):
    import jax

    from tempest_jax import sim
    from tempest_jax.bench.report import best_rate, progress, table
    from tempest_jax.sim.compiling import program_size

    figures, rows = {}, []
    for n in args.games:
        state, frame = sim.reset(jax.random.key(0), n)
        actions = jax.block_until_ready(sim.expert_actions(frame))
        start = time.perf_counter()
        state, frame = sim.step(state, actions)
        jax.block_until_ready(frame)
        compile_s = time.perf_counter() - start
        # The program the call above compiled: JAX finds it in its cache (no second compile).
        size = program_size(sim.lower_step(state, actions).compile())
        for _ in range(args.warmup_ticks):
            state, frame = sim.step(state, sim.expert_actions(frame))
        box = {"state": state, "frame": frame}
        steps = max(1, 4096 // n)

        def work(box=box, n=n, steps=steps):
            state, frame = box["state"], box["frame"]
            for _ in range(steps):
                state, frame = sim.step(state, sim.expert_actions(frame))
            jax.block_until_ready(frame)
            box["state"], box["frame"] = state, frame
            return n * steps

        rate = best_rate(work, min_seconds=args.seconds)
        figures[f"steps_per_s_{n}"] = rate
        figures[f"compile_s_{n}"] = compile_s
        figures[f"kernels_{n}"] = size["kernels"]
        figures[f"hlo_instructions_{n}"] = size["instructions"]
        rows.append((n, rate, 1e6 / rate * n, compile_s, size["kernels"], size["instructions"]))
        progress("sim", f"{n} games: {rate:,.0f} steps/s, compile {compile_s:.1f} s, "
                        f"{size['kernels']} kernels")
    figures["steps_per_s"] = max(figures[f"steps_per_s_{n}"] for n in args.games)
    settings = {"games": args.games, "seconds": args.seconds,
                "warmup_ticks": args.warmup_ticks, "policy": "expert",
                "backend": jax.default_backend()}
    text = table(rows, ("games", "steps/s", "us per batch step", "compile s", "kernels",
                        "HLO instructions"))
    return figures, settings, text
