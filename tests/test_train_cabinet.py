"""`env.cabinet`: the in-process simulator runs whole cabinets, played by the client's game
control with the operator's start settings, as served MAME clients are."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tempest_jax import features as F
from tempest_jax.config import ConfigError, load_config
from tempest_jax.rundir import RunDir
from tempest_jax.sim import game as G
from tempest_jax.train import Trainer

pytestmark = pytest.mark.timeout(600)


def test_cabinet_games_start_on_the_selected_level_and_store_only_play(tmp_path):
    cfg = load_config("smoke", [f"run.dir={tmp_path}", "run.name=cabinet", "env.num_games=8",
                                "env.rollout_steps=8", "env.cabinet=true",
                                "env.start_level=5", "run.log_interval_s=0.2"])
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    assert trainer.controls.state()["start_advanced"] is False, "MAME-like start settings"
    assert trainer.run(frames=1_600) == 0
    game = jax.tree.map(np.asarray, trainer.source.state[0].game)
    assert (game.game_mode & 0x80).all(), "every cabinet bought and started a real game"
    assert (game.level == 4).all(), "the level select took level 5"
    assert (game.start_bonus == 2).all(), "level 5's start bonus is armed"
    assert (game.credits == 0).all()
    # Only play frames are stored: never an attract, level-select or start-up frame.
    buffer = trainer.replay.buffer
    stored = np.flatnonzero(buffer.tree.leaves > 0)
    assert stored.size > 0
    gamestate = np.rint(buffer.obs[stored, F.LAYOUT["gamestate"].start].astype(np.float32)
                        * 36).astype(int)
    assert set(gamestate.tolist()) <= {G.GS_PLAYING, G.GS_ZOOM}


def test_cabinet_start_levels_are_the_level_selects():
    with pytest.raises(ConfigError, match="1..81"):
        load_config("smoke", ["env.cabinet=true", "env.start_level=90"])
