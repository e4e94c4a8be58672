"""The package as a new user gets it: `python -m build` makes the sdist and the wheel, pip installs
the wheel into a fresh virtual environment outside the source tree, and that environment's
`tempest-jax`, run from another directory, finds everything it ships (presets, the MAME client
scripts) and trains and evaluates.

The fresh environment gets the wheel's dependencies (JAX and the rest) by linking to those this
test runs with, minus tempest-jax itself, instead of downloading them; pip still checks, offline,
that the wheel's declared dependencies are all there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from luarun import interpreter

import tempest_jax

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted(p.stem for p in (REPO / "tempest_jax" / "configs").glob("*.toml"))
LUA_SCRIPTS = sorted(p.name for p in (REPO / "tempest_jax" / "lua").glob("*.lua"))
# tempest-jax's own entries in a site-packages directory: the package, its metadata, and the
# files of an editable install.
OWN_ENTRY = re.compile(r"(__editable__[._]+)?tempest_jax\b")
# Not part of the source a fresh checkout holds: environments, runs, caches and build leftovers
# (a stale *.egg-info/SOURCES.txt would put files in the wheel that the package data does not).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "runs",
                                    "__pycache__", ".*_cache", ".hypothesis", "test-artifacts")


def dependency_overlay(dest: Path) -> Path:
    """Links to every entry of this interpreter's site-packages except tempest-jax's own."""
    dest.mkdir()
    for site_dir in map(Path, site.getsitepackages()):
        if not site_dir.is_dir():
            continue
        for entry in site_dir.iterdir():
            target = dest / entry.name
            if not OWN_ENTRY.match(entry.name) and not target.exists():
                target.symlink_to(entry)
    return dest


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: nothing points Python at the source tree."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def check_run(argv: list[str], cwd: Path, timeout: float = 600, **env: str) -> str:
    proc = subprocess.run(argv, cwd=cwd, env={**clean_env(), **env}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f"{' '.join(argv)} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build` of a clean copy of the source tree: the sdist, then the wheel built
    from it."""
    source = tmp_path_factory.mktemp("source") / "tempest-jax"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend comes from the test extras, not a download.
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed in it."""
    root = tmp_path_factory.mktemp("install")
    env_dir = root / "venv"
    check_run([sys.executable, "-m", "venv", str(env_dir)], cwd=root)
    python = env_dir / "bin" / "python"
    env_site = Path(check_run([str(python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"], cwd=root).strip())
    overlay = dependency_overlay(root / "dependencies")
    (env_site / "dependencies.pth").write_text(f"{overlay}\n")
    (wheel,) = dist.glob("*.whl")
    check_run([str(python), "-m", "pip", "install", "--no-index", "--no-cache-dir",
               "--disable-pip-version-check", str(wheel)], cwd=root)
    return env_dir


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory that is not the source tree."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def test_build_makes_an_sdist_and_a_wheel_with_the_runtime_files(dist):
    version = tempest_jax.__version__
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name == f"tempest_jax-{version}-py3-none-any.whl"
    assert sdist.name == f"tempest_jax-{version}.tar.gz"
    shipped = set(zipfile.ZipFile(wheel).namelist())
    runtime = {"tempest_jax/dashboard.html",
               *(f"tempest_jax/configs/{name}.toml" for name in PRESETS),
               *(f"tempest_jax/lua/{name}" for name in LUA_SCRIPTS)}
    assert runtime <= shipped, f"missing from the wheel: {sorted(runtime - shipped)}"
    assert not any(name.startswith("tests/") for name in shipped)
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert runtime | {"pyproject.toml", "README.md", "tests/lua/run.lua",
                      "tests/conftest.py"} <= in_sdist


def test_installed_command_runs_the_wheel_not_the_source_tree(venv, elsewhere):
    printed = check_run([str(venv / "bin" / "python"), "-c",
                         "import hashlib, tempest_jax, tempest_jax.dashboard as d; "
                         "print(tempest_jax.__file__); "
                         "print(hashlib.sha256(d.page_html()).hexdigest())"], cwd=elsewhere)
    location, page_digest = printed.split()
    assert Path(location).is_relative_to(venv)
    page = (REPO / "tempest_jax" / "dashboard.html").read_bytes()
    assert page_digest == hashlib.sha256(page).hexdigest(), "the dashboard page is shipped"
    version = check_run([str(venv / "bin" / "tempest-jax"), "--version"], cwd=elsewhere)
    assert version.strip() == f"tempest-jax {tempest_jax.__version__}"


def test_installed_presets(venv, elsewhere):
    exe = str(venv / "bin" / "tempest-jax")
    assert check_run([exe, "config", "presets"], cwd=elsewhere).split() == PRESETS
    shown = check_run([exe, "config", "show", "--config", "smoke", "--json"], cwd=elsewhere)
    assert json.loads(shown)["network"]["trunk_width"] == 32


def test_installed_lua_path_is_the_client_mame_gets(venv, elsewhere):
    exe = str(venv / "bin" / "tempest-jax")
    main_lua = Path(check_run([exe, "lua-path"], cwd=elsewhere).strip())
    assert main_lua.is_absolute() and main_lua.is_relative_to(venv) and main_lua.is_file()
    assert sorted(p.name for p in main_lua.parent.glob("*.lua")) == LUA_SCRIPTS
    mame = elsewhere / "fake-mame"  # -verifyroms succeeds; a launch records its arguments
    mame.write_text('#!/bin/sh\n[ "$1" = "-verifyroms" ] && exit 0\necho "$*" > launched\n')
    mame.chmod(mame.stat().st_mode | stat.S_IXUSR)
    check_run([exe, "mame", "--clients", "1", "--mame", str(mame), "--seconds", "5",
               "--state-dir", "state"], cwd=elsewhere)
    words = (elsewhere / "state" / "instance_0" / "launched").read_text().split()
    assert words[words.index("-autoboot_script") + 1] == str(main_lua)


def test_installed_lua_client_loads_its_modules(venv, elsewhere):
    """main.lua requires its modules from beside itself, then refuses the bad server address
    before it needs anything of MAME's."""
    lua = interpreter("lua5.4")
    main_lua = check_run([str(venv / "bin" / "tempest-jax"), "lua-path"], cwd=elsewhere).strip()
    printed = check_run([lua, main_lua], cwd=elsewhere, TEMPEST_SERVER="no-port")
    assert "not started: TEMPEST_SERVER" in printed


def test_installed_train_then_eval(venv, elsewhere):
    exe = str(venv / "bin" / "tempest-jax")
    # Compiled programs do not depend on where the package lies: the smoke run's are shared
    # with the other tests that train it, through the compile cache conftest sets up (the
    # environment passes it on).
    check_run([exe, "train", "--config", "smoke", "--frames", "2000", "--set", "run.name=first"],
              cwd=elsewhere)
    run_dir = elsewhere / "runs" / "first"
    assert (run_dir / "config.toml").is_file() and (run_dir / "checkpoints").is_dir()
    printed = check_run([exe, "eval", "runs/first", "--episodes", "2", "--max-ticks", "300",
                         "--json"], cwd=elsewhere)
    results = json.loads(printed)
    for policy in ("network", "expert", "random"):
        assert results[policy]["games"] == 2
