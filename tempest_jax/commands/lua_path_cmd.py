"""Print the absolute path of the installed MAME client script, `main.lua`.

For starting MAME yourself (`tempest-jax mame` passes MAME the same path): the modules main.lua
requires lie beside it, and it finds them there wherever tempest-jax is installed.

Example:
  TEMPEST_SERVER=127.0.0.1:9999 mame tempest1 -autoboot_script "$(tempest-jax lua-path)"
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from pathlib import Path


def main_lua_path() -> Path:
    """`main.lua` in the installed package. MAME reads it, and requires its sibling modules,
    from disk: pip installs a wheel as files, so the package's resources are real paths."""
    return Path(str(importlib.resources.files("tempest_jax") / "lua" / "main.lua")).resolve()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    script = main_lua_path()
    if not script.is_file():
        print(f"tempest-jax lua-path: {script} is missing: reinstall tempest-jax",
              file=sys.stderr)
        return 1
    print(script)
    return 0
