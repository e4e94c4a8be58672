"""Config: presets resolve, overrides apply, and bad keys/types/values are clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from tempest_jax.config import (
    REDACTED,
    TOKEN_ENV,
    Config,
    ConfigError,
    LearnerConfig,
    load_config,
    preset_names,
)


def test_defaults_match_the_design():
    cfg = load_config(None)
    assert cfg.learner.batch_size == 256 and cfg.replay.n_step == 12
    assert cfg.replay.gamma == 0.99
    assert (cfg.network.num_atoms, cfg.network.v_min, cfg.network.v_max) == (51, -100.0, 100.0)
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 9999)
    assert (cfg.dashboard.host, cfg.dashboard.port) == ("127.0.0.1", 8765)
    assert 100_000 <= cfg.replay.capacity <= 15_000_000


@pytest.mark.parametrize("preset", ["sim", "mame", "mame-finetune", "smoke", "gpu"])
def test_presets_load(preset):
    assert preset in preset_names()
    cfg = load_config(preset)
    assert isinstance(cfg, Config)


def test_the_finetune_preset_fits_a_sim_run_and_the_gpu_presets_the_default_network():
    """`train --config mame-finetune --init-from` a sim run needs the same network; the sim
    preset's is its own (smaller than the default), the gpu presets keep the default's shape
    (the compute dtype may differ)."""
    def shape(cfg):
        return dataclasses.replace(cfg.network, dtype="float32")

    assert shape(load_config("mame-finetune")) == shape(load_config("sim"))
    assert shape(load_config("sim")) != shape(Config())
    for preset in ("gpu", "gpu-node", "gpu-multinode", "tpu-pod"):
        assert shape(load_config(preset)) == shape(Config())


def test_games_start_level_is_the_sources_own():
    """A served run's games start where the server tells its clients, not on env.start_level
    (which only the simulator's own games use): its periodic evaluations play there too."""
    assert load_config("sim", ["env.start_level=5"]).games_start_level == 5
    mame = load_config("mame", ["env.start_level=5", "server.start_level_min=9"])
    assert mame.games_start_level == 9
    assert load_config("mame").games_start_level == 13


def test_overrides_apply_with_types():
    cfg = load_config("smoke", ["learner.lr=3e-4", "learner.batch_size=64",
                                "dashboard.enabled=true", "server.host=0.0.0.0",
                                "replay.capacity=1_000_000"])
    assert cfg.learner.lr == 3e-4 and cfg.learner.batch_size == 64
    assert cfg.dashboard.enabled is True and cfg.server.host == "0.0.0.0"
    assert cfg.replay.capacity == 1_000_000
    assert load_config("smoke").network.trunk_width == 32  # the preset itself is untouched


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.learner.lr = 1.0


@pytest.mark.parametrize("override,message", [
    ("learner.foo=1", "unknown key learner.foo; valid keys in \\[learner\\]: batch_size"),
    ("bogus.lr=1", "unknown section 'bogus'.*valid sections: env, reward"),
    ("learner.lr=fast", "learner.lr must be a number"),
    ("learner.batch_size=2.5", "learner.batch_size must be an integer"),
    ("dashboard.enabled=maybe", "dashboard.enabled must be true or false"),
    ("learner.batch_size=0", "learner.batch_size = 0 is out of range: must be int >= 1"),
    ("replay.gamma=1.5", "replay.gamma = 1.5 is out of range"),
    ("env.source=atari", "env.source must be one of sim, mame"),
    ("learner.lr", "must look like section.key=value"),
    ("lr=1", "must name section.key"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="v_min"):
        load_config(None, ["network.v_min=100", "network.v_max=-100"])
    with pytest.raises(ConfigError, match="attn_heads"):
        load_config(None, ["network.attn_dim=100", "network.attn_heads=8"])


def test_bad_preset_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown config preset 'nope'; valid presets: .*sim"):
        load_config("nope")
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text("[learner]\nlearning_rate = 1e-4\n")
    with pytest.raises(ConfigError, match="unknown key learner.learning_rate"):
        load_config(str(bad_key))
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('[learner]\nbatch_size = "big"\n')
    with pytest.raises(ConfigError, match="learner.batch_size must be int"):
        load_config(str(bad_type))
    broken = tmp_path / "broken.toml"
    broken.write_text("[learner\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(broken))


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="learner.batch_size"):
        LearnerConfig(batch_size=-1)


def test_toml_and_dict_round_trip(tmp_path):
    cfg = load_config("smoke", ["learner.lr=2e-4"])
    assert Config.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "resolved.toml"
    path.write_text(cfg.to_toml())
    assert load_config(str(path)) == cfg


def test_tokens_are_never_saved_and_a_resumed_run_asks_for_them(tmp_path, monkeypatch, capsys):
    """The run directory's config.toml and the checkpoints hold a marker, not the tokens; a
    run resumed from them refuses to start until the tokens are given again."""
    import jax

    from tempest_jax.checkpoint import Checkpointer
    from tempest_jax.cli import main
    from tempest_jax.learner import make_learner
    from tempest_jax.rundir import RunDir

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    cfg = load_config("smoke", [f"run.dir={tmp_path}", "run.name=secret", "env.source=mame",
                                "server.token=s3rver-secret", "dashboard.enabled=true",
                                "dashboard.token=dash-secret"])
    run = RunDir.create(cfg)
    learner = make_learner(cfg)
    ckpt = Checkpointer(run.checkpoints)
    ckpt.save(1, learner, learner.init(jax.random.key(0)), {"frames": 1}, cfg)
    ckpt.wait()
    saved = ckpt.saved_config()
    ckpt.close()
    on_disk = b"".join(p.read_bytes() for p in run.path.rglob("*") if p.is_file())
    assert b"s3rver-secret" not in on_disk and b"dash-secret" not in on_disk
    for restored in (load_config(str(run.config_file)), saved):
        assert restored.server.token == restored.dashboard.token == REDACTED
    assert cfg.without_secrets().without_secrets() == cfg.without_secrets()
    assert load_config("smoke").without_secrets() == load_config("smoke")  # nothing to redact

    assert main(["train", "--resume", str(run.path), "--no-keys"]) == 2
    assert "server.token was set when this run started" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert saved.server.resolved_token() == "from-the-environment"
    assert main(["train", "--resume", str(run.path), "--no-keys"]) == 2
    assert "dashboard.token was set when this run started" in capsys.readouterr().err
    assert load_config(str(run.config_file), ["dashboard.token=again"]).dashboard \
        .resolved_token() == "again"


def test_start_level_span_stays_within_the_game_and_off_cabinets():
    cfg = load_config("sim", ["env.start_level=90", "env.start_level_span=10"])
    assert cfg.env.start_level_span == 10
    with pytest.raises(ConfigError, match="last level is 99"):
        load_config("sim", ["env.start_level=90", "env.start_level_span=11"])
    with pytest.raises(ConfigError, match="level select"):
        load_config("sim", ["env.cabinet=true", "env.start_level_span=2"])
