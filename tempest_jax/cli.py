"""The `tempest-jax` command line.

Each subcommand lives in its own module and is imported only when it runs, so `--help` stays
fast and a command's heavy dependencies (JAX, Flax) load only where needed. A module plugs in
with `add_arguments(parser)` and `run(args) -> int`; commands that take a config get
`--config` and `--set` through `add_config_arguments`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from tempest_jax import __version__, hostmem
from tempest_jax.config import DEFAULT_PRESET, Config, ConfigError, load_config

# name -> (module, one-line help). Add a command here only once it works.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("tempest_jax.commands.train_cmd", "train on the simulator or serve MAME clients"),
    "eval": ("tempest_jax.commands.eval_cmd",
             "evaluate a checkpoint against the expert and a random policy"),
    "plot": ("tempest_jax.commands.plot_cmd", "plot learning curves of runs into a PNG"),
    "sim-client": ("tempest_jax.commands.sim_client_cmd",
                   "simulated MAME clients playing against a running server"),
    "config": ("tempest_jax.commands.config_cmd", "show the resolved configuration"),
    "bench": ("tempest_jax.bench", "measure throughput and latency, fuzz and soak the server"),
    "sim": ("tempest_jax.commands.sim_cmd", "play the embedded simulator (expert or random)"),
    "mame": ("tempest_jax.commands.mame_cmd", "launch headless MAME clients for the server"),
    "lua-path": ("tempest_jax.commands.lua_path_cmd",
                 "print the path of the MAME client script (main.lua) to start MAME yourself"),
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_PRESET, metavar="PRESET|FILE",
                        help="preset name (`tempest-jax config presets` lists them) or a .toml "
                             f"path (default: {DEFAULT_PRESET})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one config value; repeatable (e.g. --set learner.lr=1e-4)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _bounded(kind: type, accepts: Callable[[float], bool], bound: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not accepts(value):  # NaN fails every comparison, so it lands here too
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def positive(kind: type = int) -> Callable[[str], float]:
    """An argparse type: a `kind` (int or float) greater than 0, else a usage error naming the
    option (a count or a duration of 0 would only fail later, deep in the command's work)."""
    return _bounded(kind, lambda value: value > 0, "> 0")


def non_negative(kind: type = int) -> Callable[[str], float]:
    """An argparse type: a `kind` (int or float) of at least 0."""
    return _bounded(kind, lambda value: value >= 0, ">= 0")


def start_level(text: str) -> int:
    """An argparse type: a 1-based start level, checked as the config checks
    `env.start_level`."""
    try:
        return load_config(None, [f"env.start_level={text}"]).env.start_level
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tempest-jax",
        description="A JAX/Flax Rainbow-style learner for Atari Tempest, with an embedded "
                    "JAX Tempest simulator as its default environment.")
    parser.add_argument("--version", action="version", version=f"tempest-jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    hostmem.retain_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ConfigError as e:
        print(f"tempest-jax: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
