"""Show the resolved configuration: defaults, then the preset, then --set overrides.

Examples:
  tempest-jax config show
  tempest-jax config show --config smoke --set learner.lr=3e-4
  tempest-jax config show --json
  tempest-jax config presets
"""

from __future__ import annotations

import argparse
import json

from tempest_jax import cli
from tempest_jax.config import preset_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the resolved config (TOML, or JSON with --json)")
    cli.add_config_arguments(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    sub.add_parser("presets", help="list the preset names --config accepts")


def run(args: argparse.Namespace) -> int:
    if args.action == "presets":
        print("\n".join(preset_names()))
        return 0
    cfg = cli.config_from_args(args)
    print(json.dumps(cfg.to_dict(), indent=2) if args.json else cfg.to_toml(), end="\n")
    return 0
