"""The installed `tempest-jax` command: help, config show, config errors, bench JSON format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest

from tempest_jax.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("tempest-jax") or str(
        __import__("pathlib").Path(sys.executable).parent / "tempest-jax")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "config" in result.stdout and "bench" in result.stdout


def test_config_show_prints_resolved_toml():
    result = run_cli("config", "show", "--config", "smoke", "--set", "learner.lr=1e-4")
    assert result.returncode == 0, result.stderr
    resolved = tomllib.loads(result.stdout)
    assert resolved["learner"]["lr"] == 1e-4
    assert resolved["network"]["trunk_width"] == 32


def test_config_show_json(capsys):
    assert main(["config", "show", "--json", "--set", "replay.n_step=5"]) == 0
    assert json.loads(capsys.readouterr().out)["replay"]["n_step"] == 5


@pytest.mark.parametrize("override,text", [("learner.nope=1", "unknown key learner.nope"),
                                           ("learner.lr=x", "learner.lr must be a number")])
def test_config_error_exit_code_and_message(capsys, override, text):
    assert main(["config", "show", "--set", override]) == 2
    assert text in capsys.readouterr().err


def test_bench_protocol_json_format(capsys):
    assert main(["bench", "protocol", "--json", "--frames", "512", "--seconds", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bench"] == "protocol"
    assert set(report) == {"bench", "figures", "settings", "machine"}
    assert report["figures"]["frames_per_s"] > 0
    assert report["settings"]["frames"] == 512
