"""Running the plain-Lua side of the project from tests: the interpreters and `tests/lua/tool.lua`.

CI installs Debian's `lua5.3` (the Lua that MAME 0.251 embeds) and `lua5.4` (current MAME's);
tests that need one skip with the package to install when it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LUA_TESTS_DIR = REPO / "tests" / "lua"  # the Lua suites; the scripts they test: tempest_jax/lua
TOOL = LUA_TESTS_DIR / "tool.lua"
INTERPRETERS = ("lua5.3", "lua5.4")


def interpreter(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install {name})")
    return path


def run_tool(lua: str, *args: str, stdin: str = "", timeout: float = 120) -> str:
    proc = subprocess.run([lua, str(TOOL), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{lua} tool.lua {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def tool_json(lua: str, *args: str, stdin: str = "") -> object:
    return json.loads(run_tool(lua, *args, stdin=stdin))
