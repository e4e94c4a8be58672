"""A short in-process simulator run, then `eval` of its checkpoint and the CLI table."""

from __future__ import annotations

import json

import pytest

from tempest_jax.cli import main
from tempest_jax.config import load_config
from tempest_jax.evaluate import evaluate
from tempest_jax.metrics import RunDir, read_metrics
from tempest_jax.train import Trainer


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config("smoke", [f"run.dir={tmp}", "run.name=sim", "env.num_games=8",
                                "env.rollout_steps=8", "run.log_interval_s=0.2"])
    run_dir = RunDir.create(cfg)
    trainer = Trainer(cfg, run_dir, install_signal_handlers=False)
    assert trainer.run(frames=4_000) == 0
    return trainer, run_dir


def test_sim_training_fills_replay_learns_and_checkpoints(sim_run):
    trainer, run_dir = sim_run
    assert trainer.frames >= 4_000
    assert len(trainer.replay.buffer) > 0 and trainer.updates > 0
    assert trainer.checkpointer.latest_step() == trainer.updates
    records = read_metrics(run_dir.metrics_file)
    assert records[-1]["final"] and records[-1]["frames"] == trainer.frames
    assert all(k in records[-1] for k in ("loss", "epsilon", "expert_ratio", "replay_size"))


def test_eval_plays_network_expert_and_random_on_the_same_games(sim_run, capsys):
    _, run_dir = sim_run
    results = evaluate(run_dir.path, games=4, max_ticks=500, show_progress=False)
    for policy in ("network", "expert", "random"):
        assert results[policy]["games"] == 4
        assert results[policy]["mean_score"] >= 0
    assert main(["eval", str(run_dir.path), "--episodes", "4", "--max-ticks", "500",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["expert"] == results["expert"] and printed["network"] == results["network"]


def test_plot_draws_the_runs_curves(sim_run, tmp_path):
    import matplotlib.image

    _, run_dir = sim_run
    out = tmp_path / "curves.png"
    assert main(["plot", str(run_dir.path), str(run_dir.path), "--out", str(out)]) == 0
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (800, 1200)
    # Something was drawn: far from a blank canvas, with coloured (non-grey) curve pixels.
    rgb = pixels[..., :3]
    assert (rgb < 0.9).mean() > 0.02
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).sum() > 200


def test_plot_rejects_a_directory_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="not a run directory"):
        main(["plot", str(tmp_path)])
