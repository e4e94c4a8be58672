"""`tempest-jax mame`: finding MAME, refusing without a ROM set, launching N instances with the
server address and stopping them. Stand-in `mame` scripts play MAME where a ROM would be needed."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from tempest_jax.cli import main
from tempest_jax.commands import mame_cmd
from tempest_jax.commands.lua_path_cmd import main_lua_path

pytestmark = pytest.mark.timeout(60)

DEBIAN_MAME = Path("/usr/games/mame")


def fake_mame(tmp_path: Path, body: str) -> Path:
    """An executable standing in for MAME: -verifyroms succeeds, a launch runs `body` in the
    instance directory (its working directory)."""
    path = tmp_path / "fake-mame"
    path.write_text("#!/bin/sh\n"
                    'if [ "$1" = "-verifyroms" ]; then exit 0; fi\n'
                    'echo "$TEMPEST_SERVER $*" > launched\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_explicit_mame_path_missing(capsys, tmp_path):
    assert main(["mame", "--mame", str(tmp_path / "nope"), "--state-dir", str(tmp_path)]) == 2
    assert "MAME executable" in capsys.readouterr().err


def test_mame_not_found_anywhere(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(mame_cmd.shutil, "which", lambda name: None)
    monkeypatch.setattr(mame_cmd, "MAME_FALLBACKS", (tmp_path / "usr-games-mame",))
    assert main(["mame", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MAME not found" in err and "apt-get install mame" in err


@pytest.mark.skipif(not (shutil.which("mame") or DEBIAN_MAME.exists()),
                    reason="MAME not installed (apt-get install mame)")
def test_missing_rom_set_is_reported_before_launch(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    empty = tmp_path / "roms"
    empty.mkdir()
    assert main(["mame", "--rompath", str(empty), "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "ROM set 'tempest1' not found" in err and str(empty) in err
    assert not (tmp_path / "state").exists(), "nothing launched"


def test_launches_n_instances_and_stops_them_cleanly(capsys, tmp_path):
    mame = fake_mame(tmp_path, 'while [ ! -e "$TEMPEST_STOP_FILE" ]; do sleep 0.05; done\n'
                               "echo stopped >> launched\n")
    state = tmp_path / "state"
    code = main(["mame", "--mame", str(mame), "--clients", "3", "--rompath", str(tmp_path),
                 "--set", "server.port=9876", "--set", "server.host=0.0.0.0",
                 "--seconds", "0.5", "--state-dir", str(state)])
    assert code == 0, capsys.readouterr().err
    for i in range(3):
        words, stopped = (state / f"instance_{i}" / "launched").read_text().splitlines()
        words = words.split()
        assert words[0] == "127.0.0.1:9876", "a server on every interface is reached on loopback"
        assert words[1] == "tempest1"
        assert words[words.index("-autoboot_script") + 1] == str(main_lua_path())
        assert words[words.index("-rompath") + 1] == str(tmp_path)
        assert words[words.index("-video") + 1] == "none" and "-nothrottle" in words
        assert stopped == "stopped"
    assert not (state / "stop").exists(), "stop file removed"


def test_instance_ignoring_the_stop_request_is_killed(capsys, tmp_path):
    mame = fake_mame(tmp_path, "sleep 30\n")
    code = main(["mame", "--mame", str(mame), "--seconds", "0.2", "--stop-timeout", "0.3",
                 "--state-dir", str(tmp_path / "state")])
    assert code == 1
    assert "did not exit within 0.3 s: killed" in capsys.readouterr().err


def test_instance_failing_at_start_is_reported(capsys, tmp_path):
    mame = fake_mame(tmp_path, 'echo "Fatal error: Required files are missing"; exit 2\n')
    code = main(["mame", "--mame", str(mame), "--state-dir", str(tmp_path / "state")])
    assert code == 1
    err = capsys.readouterr().err
    assert "exited with code 2 (required files missing)" in err
    assert "Required files are missing" in err


def test_overlay_flag_reaches_the_instances_and_is_off_by_default(capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delenv(mame_cmd.OVERLAY_ENV, raising=False)
    mame = fake_mame(tmp_path, f'echo "overlay=${mame_cmd.OVERLAY_ENV}" >> launched\n')
    for flag, expected in (([], "overlay="), (["--overlay"], "overlay=1")):
        state = tmp_path / f"state{len(flag)}"
        assert main(["mame", "--mame", str(mame), "--seconds", "0.2", "--state-dir",
                     str(state), *flag]) == 0, capsys.readouterr().err
        lines = (state / "instance_0" / "launched").read_text().splitlines()
        assert lines[1] == expected
