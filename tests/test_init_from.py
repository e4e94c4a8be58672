"""`train --init-from`: a new run whose network starts from another run's checkpoint.

A smoke run trains on the simulator. A MAME-mode run (the mame-finetune preset, sized like the
smoke preset) starts from its checkpoint and is served to simulated clients: the parameters it
serves before its first update are the checkpoint's, its counters start at zero, its schedules
and learning-rate warm-up are its own config's, and it records where its network came from.
A source whose network has another shape, or that has no such checkpoint, is refused by name
before a run directory is made.
"""

from __future__ import annotations

import re
import shutil

import jax
import numpy as np
import pytest
from run_harness import TrainerThread

from tempest_jax import schedules
from tempest_jax.cli import main
from tempest_jax.config import load_config
from tempest_jax.metrics import read_metrics
from tempest_jax.resume import parse_init_from, restore_run
from tempest_jax.rundir import RunDir
from tempest_jax.simclient import run_sim_clients
from tempest_jax.train import Trainer

CLIENTS = 4
TICKS = 200


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A smoke run on the simulator with two checkpoints, both after updates (so neither holds
    the initial parameters a new run with the same seed would draw): (run directory, config,
    the first checkpoint's step)."""
    root = tmp_path_factory.mktemp("source")
    cfg = load_config("smoke", [f"run.dir={root}", "run.name=sim", "run.total_frames=0"])
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        run.wait_until(lambda: trainer.updates >= 10, "10 updates")
        first = trainer.save()
        run.wait_until(lambda: trainer.updates > first + 10, "10 more updates")
        assert run.stop() == 0
    return trainer.run_dir.path, cfg, first


def finetune_config(root, name: str, *settings: str):
    """The mame-finetune preset with the smoke preset's network, learner batch and replay size
    (the source's network; quick to compile), served on a free port."""
    smoke = load_config("smoke")
    cfg = load_config("mame-finetune", [
        "server.port=0", "server.max_clients=8", "dashboard.enabled=false",
        f"run.dir={root}", f"run.name={name}", "run.log_interval_s=0.5", *settings])
    return cfg.replace(network=smoke.to_dict()["network"], learner={
        key: getattr(smoke.learner, key) for key in (
            "batch_size", "updates_per_dispatch", "target_update", "publish_interval")},
        replay={"capacity": 20_000, "min_size": 64, "n_step": 3, "replay_ratio": 0.0})


def test_init_from_spec_names_a_run_and_a_checkpoint():
    assert parse_init_from("runs/a") == (parse_init_from("runs/a:latest")[0], "latest")
    assert parse_init_from("runs/a:best")[1] == "best"
    assert parse_init_from("runs/a:1200") == (parse_init_from("runs/a")[0], "1200")
    # A colon that selects nothing belongs to the path.
    assert str(parse_init_from("runs/x:y")[0]) == "runs/x:y"


@pytest.mark.timeout(900)
def test_a_mame_run_starts_from_a_simulator_checkpoint(source_run, tmp_path):
    source_path, source_cfg, _ = source_run
    _, source = restore_run(source_path / "checkpoints")  # the newest: what :latest means
    source_frames = int(source.counters["frames"])
    assert source_frames > 0 and int(source.train_state.step) > 0

    # An expert ratio of its own (the preset keeps the default's), so that the new run's
    # schedule can be told from the source's.
    cfg = finetune_config(tmp_path, "finetune", f"run.init_from={source_path}:latest",
                          "schedule.expert_start=0.1")
    assert cfg.env.source == "mame"
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    assert trainer.init_from == str(source_path.absolute() / "checkpoints" / str(source.step))
    state = trainer.learning.state
    assert (trainer.frames, trainer.updates, int(state.step), int(state.skipped)) == (0, 0, 0, 0)
    assert_trees_equal(state.params, source.train_state.params)
    assert_trees_equal(state.target_params, source.train_state.params)
    # Without --init-optimizer Adam starts afresh: no moments yet.
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(state.opt_state))
    # The schedules are the new config's at frame 0, not the source's where it stopped.
    assert trainer.controls.effective_epsilon() == pytest.approx(cfg.schedule.eps_start)
    assert trainer.controls.effective_expert_ratio() == pytest.approx(cfg.schedule.expert_start)
    assert schedules.epsilon(source_frames, source_cfg.schedule) != pytest.approx(
        cfg.schedule.eps_start)
    assert schedules.expert_ratio(source_frames, source_cfg.schedule) != pytest.approx(
        cfg.schedule.expert_start)

    with TrainerThread(trainer) as run:
        address = run.wait_for_server()
        # What the server answers with until the learner first publishes: the checkpoint's
        # network, as inference reads it (its matrices cast when inference multiplies in
        # bfloat16).
        served, version = trainer.params.get()
        assert version == 0
        assert_trees_equal(served, trainer.inference.params(source.train_state.params))
        played = run_sim_clients(address, CLIENTS, ticks=TICKS, reply_timeout=600)
        run.wait_until(lambda: trainer.updates > 0, "the learner's first update")
        run.wait_until(lambda: trainer.server.stats.clients_connected == 0,
                       "the clients' disconnects")
        assert run.stop() == 0

    final = read_metrics(trainer.run_dir.metrics_file)[-1]
    assert final["final"] and final["frames"] == played.frames == CLIENTS * TICKS
    assert final["epsilon"] == pytest.approx(float(schedules.epsilon(
        final["frames"], cfg.schedule)))
    assert final["expert_ratio"] == pytest.approx(float(schedules.expert_ratio(
        final["frames"], cfg.schedule)))
    # The learning rate's warm-up started again at update 0: the last dispatch's K updates ran
    # at the new config's rates for steps updates-K .. updates-1.
    assert int(trainer.learning.state.skipped) == 0
    k = cfg.learner.updates_per_dispatch
    expected_lr = np.mean([schedules.learning_rate(np.float32(step), cfg.learner)
                           for step in range(trainer.updates - k, trainer.updates)])
    assert final["lr"] == pytest.approx(float(expected_lr), rel=1e-5)

    # Its checkpoints record where its network came from; a resume carries that on.
    _, saved = restore_run(trainer.run_dir.checkpoints)
    assert saved.counters["init_from"] == trainer.init_from
    assert saved.config.run.init_from == f"{source_path}:latest"
    resumed = Trainer(cfg, trainer.run_dir, resume=True, install_signal_handlers=False)
    try:
        assert resumed.init_from == trainer.init_from and resumed.updates == trainer.updates
    finally:
        resumed.saver.checkpointer.close()


def test_init_optimizer_takes_adams_moments_from_a_chosen_step(source_run, tmp_path):
    source_path, _, first = source_run
    _, source = restore_run(source_path / "checkpoints", step=first)
    cfg = finetune_config(tmp_path, "with-optimizer", f"run.init_from={source_path}:{first}",
                          "run.init_optimizer=true")
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    try:
        state = trainer.learning.state
        assert_trees_equal(state.params, source.train_state.params)
        assert_trees_equal(state.opt_state, source.train_state.opt_state)
        assert int(state.step) == 0 and int(source.train_state.step) > 0
        assert trainer.init_from == str(source_path.absolute() / "checkpoints" / str(first))
    finally:
        trainer.saver.checkpointer.close()


def test_best_is_the_checkpoint_in_checkpoints_best(source_run, tmp_path):
    source_path, _, first = source_run
    copy = tmp_path / "source"
    shutil.copytree(source_path, copy)
    shutil.copytree(copy / "checkpoints" / str(first), copy / "checkpoints" / "best" / str(first))
    _, best = restore_run(copy / "checkpoints", step=first)
    cfg = finetune_config(tmp_path, "from-best", f"run.init_from={copy}:best")
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    try:
        assert_trees_equal(trainer.learning.state.params, best.train_state.params)
        assert trainer.init_from == str(copy.absolute() / "checkpoints" / "best" / str(first))
    finally:
        trainer.saver.checkpointer.close()


def train_cli(tmp_path, *args: str) -> int:
    return main(["train", "--no-keys", "--set", f"run.dir={tmp_path}", "--set", "run.name=new",
                 *args])


def test_a_network_of_another_shape_is_refused_by_name(source_run, tmp_path, capsys):
    source_path, _, _ = source_run
    assert train_cli(tmp_path, "--config", "smoke", "--set", "network.trunk_width=48",
                     "--init-from", str(source_path)) == 2
    error = capsys.readouterr().err
    assert "network.trunk_width = 32 there, 48 here" in error, error
    assert re.search(r"params/trunk_0/kernel: the checkpoint has \(\d+, 32\), this run "
                     r"\(\d+, 48\)", error), error
    assert not (tmp_path / "new").exists(), "a refused start leaves no run directory"


def test_a_missing_checkpoint_is_refused_by_name(source_run, tmp_path, capsys):
    source_path, _, first = source_run
    cases = [(f"{source_path}:best", "has no best checkpoint yet"),
             (f"{source_path}:999999", f"no checkpoint 999999 in .*its checkpoints: {first}, "),
             (str(tmp_path / "nowhere"), "is not a run directory")]
    for spec, message in cases:
        assert train_cli(tmp_path, "--config", "smoke", "--init-from", spec) == 2
        error = capsys.readouterr().err
        assert re.search(message, error), error
    assert not (tmp_path / "new").exists()
    assert train_cli(tmp_path, "--config", "smoke", "--init-optimizer") == 2
    assert "run.init_optimizer needs run.init_from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli(tmp_path, "--resume", str(source_path), "--init-from", str(source_path))
