"""The live game view: which games are watched and their frames (`FrameWatch`), and
`/api/frame` of a served run, checked against the frames its clients sent and the actions they
were answered. (The simulator's game view is drawn by headless Chromium in test_dashboard.)"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import numpy as np
import pytest
from run_harness import TrainerThread
from test_dashboard import request

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax import sim
from tempest_jax.clients import ClientPool
from tempest_jax.config import load_config
from tempest_jax.gameview import LISTED_GAMES, FrameWatch, GameView, WatchedFrame
from tempest_jax.rundir import RunDir
from tempest_jax.simclient import frame_wire_bytes, joint_of_replies
from tempest_jax.train import Trainer

CLIENTS = 2
MAX_TICKS = 5_000  # a bound on the test's own loop; the frame shows up within a few ticks


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame_of(game: int) -> WatchedFrame:
    return WatchedFrame(game, np.zeros(F.STATE_SIZE, np.float32), {}, 0, False, 0.0)


def test_only_games_asked_for_recently_are_watched():
    clock = FakeClock()
    watch = FrameWatch(ttl_s=3.0, clock=clock)
    assert watch.watched() == []
    assert watch.latest(4) is None  # asking starts watching; the source copies from now on
    assert watch.watched() == [4]
    watch.put(frame_of(4))
    assert watch.latest(4).game == 4
    clock.now = 2.0
    assert watch.latest(1) is None and sorted(watch.watched()) == [1, 4]
    clock.now = 3.5  # game 4 was last asked for at 0.0
    assert watch.watched() == [1]
    assert watch.latest(4) is None  # its frame went with it
    watch.put(frame_of(1))
    watch.forget(1)  # the client left
    assert watch.latest(1) is None


def test_many_games_are_listed_in_part_and_any_may_be_watched():
    watch = FrameWatch()
    inference = SimpleNamespace(row_multiple=1, obs_size=F.STATE_SIZE)  # no forward pass here
    view = GameView(watch, lambda: range(1000), "game", inference, params=None)
    listed = view.answer(None)
    assert listed == {"kind": "game", "count": 1000, "games": list(range(LISTED_GAMES))}
    assert view.answer(999)["frame"] is None and watch.watched() == [999]
    with pytest.raises(KeyError, match="no game 1000"):
        view.answer(1000)


@pytest.mark.timeout(900)
def test_a_served_clients_frame_on_the_game_view(tmp_path):
    cfg = load_config("smoke", [
        "env.source=mame", "server.port=0", f"server.max_clients={CLIENTS}",
        f"run.dir={tmp_path}", "run.name=served", "dashboard.enabled=true", "dashboard.port=0",
        "run.total_frames=0"])
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        address = run.wait_for_server()
        dashboard = run.wait_until(lambda: trainer.observers.dashboard, "the dashboard")
        api = dashboard.url + "api/frame"
        assert request(api)[1] == {"kind": "client", "count": 0, "games": []}
        state, frame = sim.reset(jax.random.key(0), CLIENTS, 1)
        pool = ClientPool(address, CLIENTS, timeout=600)  # a hang guard, not a speed limit
        sent: dict[bytes, set] = {}  # each payload sent, with the actions it was answered
        watched, shown = None, None
        try:
            for tick in range(MAX_TICKS):
                wire = frame_wire_bytes(frame)
                joint = joint_of_replies(b"".join(pool.exchange(wire)))
                for payload, action in zip(wire, joint.tolist()):
                    sent.setdefault(payload, set()).add(action)
                state, frame = sim.step(state, joint)
                if tick % 10:
                    continue
                if watched is None:
                    games = request(api)[1]["games"]
                    watched = games[-1] if len(games) == CLIENTS else None
                    continue
                status, answer = request(f"{api}?game={watched}")
                assert status == 200 and answer["game"] == watched, answer
                if answer["frame"] is not None:
                    shown = answer["frame"]
                    break
        finally:
            pool.close()
        assert shown is not None, f"no frame of client {watched} within {MAX_TICKS} ticks"
        assert request(f"{api}?game=999")[0] == 404

    header = shown["header"]
    wire = P.encode_frame(P.Frame(**header, state=np.asarray(shown["state"], np.float32)))
    assert wire in sent, "the frame shown is not one the client sent"
    assert shown["action"]["joint"] in sent[wire]  # the reply (0 on a terminal frame)
    expert = F.expert_joint_action(header["expert_target"], header["player_seg"],
                                   bool(header["is_open"]), header["expert_fire"],
                                   header["expert_zap"])
    assert shown["expert"]["joint"] == int(expert)
    q = np.asarray(shown["q_values"])
    assert q.shape == (F.NUM_ACTIONS,) and np.isfinite(q).all()
    picture = shown["picture"]
    assert len(picture["lines"]) > 16 and any(f"CLIENT {watched}" in text
                                             for *_, text in picture["texts"])
