"""The installed `tempest-jax` command: help, config show, config and usage errors, bench JSON
format."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize("argv,message", [
    (["bench", "server", "--clients", "0"], "argument --clients: must be > 0, got 0"),
    (["bench", "server", "--seconds", "0"], "argument --seconds: must be > 0, got 0"),
    (["bench", "sim", "--seconds", "nan"], "argument --seconds: must be > 0, got nan"),
    (["bench", "learner", "--k", "x"], "argument --k: expected an integer, got 'x'"),
    (["eval", "runs/x", "--episodes", "0"], "argument --episodes: must be > 0, got 0"),
    (["train", "--frames", "-5"], "argument --frames: must be > 0, got -5"),
    (["sim-client", "--ticks", "0"], "argument --ticks: must be > 0, got 0"),
    (["sim-client", "--processes", "0"], "argument --processes: must be > 0, got 0"),
    (["sim", "play", "--games", "0"], "argument --games: must be > 0, got 0"),
    (["mame", "--clients", "0"], "argument --clients: must be > 0, got 0"),
    (["bench", "fuzz", "--inputs", "0"], "argument --inputs: must be > 0, got 0"),
    (["bench", "soak", "--sample-s", "0"], "argument --sample-s: must be > 0, got 0")])
def test_counts_and_durations_out_of_range_are_usage_errors(capsys, argv, message):
    """Refused while the arguments are parsed, naming the option: a count or a duration of 0
    would otherwise fail (or hang) deep in the command's work."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["eval", "runs/x", "--start-level", "0"],
                                  ["sim-client", "--start-level", "100"],
                                  ["sim", "play", "--start-level", "0"]])
def test_a_start_level_is_checked_as_the_config_checks_it(capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert re.search(r"argument --start-level: env\.start_level = \d+ is out of range",
                     capsys.readouterr().err)
