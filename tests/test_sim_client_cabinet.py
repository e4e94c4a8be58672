"""Simulated clients as whole cabinets (`run_sim_clients(cabinet=True)`, `sim-client --cabinet`)
against the game server: the server's start settings (reply bytes 3 and 4) choose the level, as
they do for the Lua client on MAME."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_server import RecordingSink, expert_policy

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.config import ServerConfig
from tempest_jax.server import GameServer
from tempest_jax.sim import game as G
from tempest_jax.simclient import run_sim_clients

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(("advanced", "level_min", "level"), [(0, 5, 5), (0, 14, 13),
                                                               (1, 1, 9)])
def test_cabinet_clients_start_where_the_server_says(advanced, level_min, level):
    cfg = ServerConfig(port=0, max_clients=4, batch_wait_ms=0.5, start_advanced=bool(advanced),
                       start_level_min=level_min)
    srv = GameServer(cfg, expert_policy, RecordingSink())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        played = run_sim_clients(srv.address, 2, ticks=120, record=True, cabinet=True,
                                 reply_timeout=120)
    finally:
        srv.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    for client in range(2):
        frames = P.decode_wire(b"".join(tick[client] for tick in played.sent))
        states = frames.gamestate.tolist()
        real = (frames.game_mode & 0x80) != 0
        assert not real[0], "switched on in attract mode"
        begin = states.index(G.GS_NEW_GAME)
        assert real[begin] and G.GS_LEVEL_SELECT in states[begin:]
        play = states.index(G.GS_PLAYING, begin)
        assert frames.level[play] + 1 == level
        # Play frames carry the server's action back (cmd fields), as from MAME.
        fire, _, _ = F.decode_joint(np.asarray([r[client] for r in played.received]))
        assert np.array_equal(frames.cmd_fire[play + 1:], fire[play:-1])
