"""Launch headless MAME instances that play Tempest for the running tempest-jax server.

Each instance runs the installed `main.lua` (the MAME side of the protocol; `tempest-jax
lua-path` prints where it is) and connects to the server at server.host:server.port from the
config, sending the server's token (server.token, else $TEMPEST_TOKEN) when one is set. MAME and
the ROM set are the user's own: MAME is found on PATH or in /usr/games (Debian's package), the
ROM set (default tempest1) in --rompath.

Ctrl-C (or --seconds running out) stops the instances cleanly: each one sends a last frame and
exits MAME itself; any that has not exited after --stop-timeout is killed (MAME ignores SIGTERM).

--overlay draws lua/display.lua's overlay over the game (state, enemy table, the server's
action, the expert's advice; the same as TEMPEST_OVERLAY=1); it is seen only with a --video
backend other than none, and changes nothing the instances send.

Examples:
  tempest-jax mame --clients 4 --rompath ~/roms
  tempest-jax mame --clients 1 --rompath ~/roms --set server.port=9998 --video soft
  tempest-jax mame --clients 1 --rompath ~/roms --video soft --overlay --throttle
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tempest_jax import cli
from tempest_jax.commands.lua_path_cmd import main_lua_path
from tempest_jax.config import TOKEN_ENV

OVERLAY_ENV = "TEMPEST_OVERLAY"  # read by display.lua
# Where `mame` is looked for after PATH: Debian installs it in /usr/games, not on root's PATH.
MAME_FALLBACKS = (Path("/usr/games/mame"),)
MAME_MISSING_FILES = 2  # MAME's exit code for "Required files are missing"
POLL_S = 0.2


class LaunchError(RuntimeError):
    """Something the user must fix before MAME can run (the message says what)."""


@dataclass
class Instance:
    index: int
    process: subprocess.Popen
    log_path: Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_config_arguments(parser)
    parser.add_argument("--clients", type=cli.positive(), default=1, metavar="N",
                        help="MAME instances to start (default 1)")
    parser.add_argument("--rompath", metavar="DIR", action="append", default=[],
                        help="directory holding the ROM set; repeatable (default: MAME's own)")
    parser.add_argument("--rom", default="tempest1", help="MAME system name (default tempest1)")
    parser.add_argument("--mame", metavar="PATH", help="MAME executable (default: PATH, then "
                        + ", ".join(str(p) for p in MAME_FALLBACKS) + ")")
    parser.add_argument("--video", default="none",
                        help="MAME -video backend; anything but 'none' opens windows")
    parser.add_argument("--throttle", action="store_true",
                        help="run at the game's real speed (default: as fast as possible)")
    parser.add_argument("--overlay", action="store_true",
                        help="draw the game state, enemies, the server's action and the "
                             "expert's advice over the game (visible with --video soft etc.)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop the instances after this long (default: run until Ctrl-C)")
    parser.add_argument("--stop-timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for a clean exit before killing (default 10)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="per-instance MAME cfg/nvram and logs (default: RUN_DIR/mame)")


def find_mame(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LaunchError(f"MAME executable {explicit} not found or not executable")
        return path
    found = shutil.which("mame")
    if found:
        return Path(found)
    for path in MAME_FALLBACKS:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise LaunchError("MAME not found on PATH or in " + ", ".join(map(str, MAME_FALLBACKS))
                      + " (Debian/Ubuntu: apt-get install mame), or pass --mame PATH")


def rompath_args(rompaths: list[str]) -> list[str]:
    return ["-rompath", ";".join(str(Path(p).expanduser()) for p in rompaths)] if rompaths else []


def verify_roms(mame: Path, rom: str, rompaths: list[str], env: dict[str, str]) -> None:
    """Fail early with a clear message when MAME cannot find the ROM set."""
    proc = subprocess.run([str(mame), "-verifyroms", rom, *rompath_args(rompaths)],
                          capture_output=True, text=True, timeout=120, env=env)
    if proc.returncode != 0:
        where = ", ".join(rompaths) if rompaths else "MAME's default rompath"
        detail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise LaunchError(f"ROM set {rom!r} not found or incomplete in {where} (MAME "
                          f"-verifyroms exit {proc.returncode}: {' / '.join(detail)}). "
                          "tempest-jax does not ship ROMs: pass --rompath DIR with your own.")


def server_address(host: str, port: int) -> str:
    """Where clients connect: a server bound to every interface is reached on loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def mame_command(mame: Path, script: Path, args: argparse.Namespace,
                 instance_dir: Path) -> list[str]:
    cmd = [str(mame), args.rom, *rompath_args(args.rompath), "-skip_gameinfo",
           "-video", args.video, "-sound", "none",
           "-cfg_directory", str(instance_dir / "cfg"),
           "-nvram_directory", str(instance_dir / "nvram"),
           "-snapshot_directory", str(instance_dir / "snap"),
           "-autoboot_script", str(script)]
    if args.video != "none":
        cmd.append("-window")
    if not args.throttle:
        cmd.append("-nothrottle")
    return cmd


def stop_instances(instances: list[Instance], stop_file: Path, timeout: float) -> None:
    """Ask every instance to exit through the stop file, then kill what is left."""
    stop_file.touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(i.process.poll() is None for i in instances):
        time.sleep(POLL_S)
    for inst in instances:
        if inst.process.poll() is None:
            print(f"instance {inst.index} did not exit within {timeout:g} s: killed",
                  file=sys.stderr)
            inst.process.kill()
            inst.process.wait()


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def run(args: argparse.Namespace) -> int:
    cfg = cli.config_from_args(args)
    try:
        script = main_lua_path()
        if not script.is_file():
            raise LaunchError(f"{script} is missing: reinstall tempest-jax")
        mame = find_mame(args.mame)
        base_env = dict(os.environ)
        verify_roms(mame, args.rom, args.rompath, base_env)
    except LaunchError as e:
        print(f"tempest-jax mame: {e}", file=sys.stderr)
        return 2

    state_dir = Path(args.state_dir or Path(cfg.run.dir) / "mame").expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_file = state_dir / "stop"
    stop_file.unlink(missing_ok=True)
    address = server_address(cfg.server.host, cfg.server.port)
    env = {**base_env, "TEMPEST_SERVER": address, "TEMPEST_STOP_FILE": str(stop_file)}
    if args.overlay:
        env[OVERLAY_ENV] = "1"
    token = cfg.server.resolved_token()
    if token:  # server.token reaches main.lua the way $TEMPEST_TOKEN would
        env[TOKEN_ENV] = token

    instances: list[Instance] = []
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for index in range(args.clients):
            instance_dir = state_dir / f"instance_{index}"
            instance_dir.mkdir(exist_ok=True)
            log_path = instance_dir / "mame.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(mame_command(mame, script, args, instance_dir),
                                           env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                           stderr=subprocess.STDOUT, cwd=instance_dir)
            instances.append(Instance(index, process, log_path))
        print(f"started {len(instances)} MAME instance(s) of {args.rom} for the server at "
              f"{address}; logs in {state_dir}/instance_*/mame.log; Ctrl-C stops them")
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
        while any(i.process.poll() is None for i in instances):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("stopping the MAME instances", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        stop_instances(instances, stop_file, args.stop_timeout)
        stop_file.unlink(missing_ok=True)

    failed = 0
    for inst in instances:
        code = inst.process.returncode
        if code != 0:
            failed += 1
            why = {MAME_MISSING_FILES: " (required files missing)",
                   -signal.SIGKILL: " (killed)"}.get(code, "")
            print(f"instance {inst.index} exited with code {code}{why}: "
                  f"{log_tail(inst.log_path)}", file=sys.stderr)
    return 1 if failed else 0
