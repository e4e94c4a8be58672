"""Benchmarks: `tempest-jax bench NAME [--json]`.

Each benchmark measures real work and prints a table, or with --json one object
{"bench": NAME, "figures": {...}, "settings": {...}, "machine": {...}} (README, "Performance").
A benchmark that checks a property (fuzz, soak) reports figures["passed"]; the command exits 1
when it is false.
"""

from __future__ import annotations

import argparse
import importlib
import json

from tempest_jax.bench.report import machine_info

# name -> module with add_arguments(parser) and measure(args) -> (figures, settings, table).
BENCHES: dict[str, str] = {
    "protocol": "tempest_jax.bench.protocol_bench",
    "server": "tempest_jax.bench.server_bench",
    "sim": "tempest_jax.bench.sim_bench",
    "replay": "tempest_jax.bench.replay_bench",
    "learner": "tempest_jax.bench.learner_bench",
    "inference": "tempest_jax.bench.inference_bench",
    "fuzz": "tempest_jax.bench.fuzz_bench",
    "soak": "tempest_jax.bench.soak_bench",
    "render": "tempest_jax.bench.render_bench",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, module_name in BENCHES.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.__doc__.splitlines()[0],
                             description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(cmd)
        cmd.set_defaults(_measure=module.measure)


def run(args: argparse.Namespace) -> int:
    figures, settings, table = args._measure(args)
    if args.json:
        print(json.dumps({"bench": args.bench, "figures": figures, "settings": settings,
                          "machine": machine_info()}))
    else:
        print(table)
    return 0 if figures.get("passed", True) else 1
