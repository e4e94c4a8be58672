"""The simulated cabinet (`sim.cabinet_reset` / `sim.cabinet_step`): attract mode and its demo
game, coins and credits, the start button, the level select, game over, the high-score check
and the initials, at the real game's RAM codes. One batch of cabinets, stepped tick by tick."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tempest_jax import sim
from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import waves as W

pytestmark = pytest.mark.timeout(300)

N = 2                                   # cabinets per batch (one compiled step for the module)


class Cabinets:
    """A batch of cabinets stepped with the same inputs; records every frame."""

    def __init__(self, seed=0, high_scores=None):
        self.state, frame = sim.cabinet_reset(jax.random.key(seed), N, high_scores)
        self.frames = [jax.device_get(frame)]

    def step(self, ticks=1, **buttons):
        values = dict(fire=0, zap=0, spinner=0, start=0, coin=0, last_level=-1, max_start=-1,
                      cursor=-1)
        values.update(buttons)
        inputs = sim.CabinetInputs(**{k: jnp.full(N, v, jnp.int32) for k, v in values.items()})
        commanded = (inputs.fire, inputs.zap, inputs.spinner)
        for _ in range(ticks):
            self.state, frame = sim.cabinet_step(self.state, inputs, commanded)
            self.frames.append(jax.device_get(frame))
        return self

    def until(self, gamestate, limit=2000, **buttons):
        """Step until the first cabinet's frame shows `gamestate`."""
        for _ in range(limit):
            if self.frames[-1].gamestate[0] == gamestate:
                return self
            self.step(**buttons)
        raise AssertionError(f"gamestate {gamestate:#x} not reached in {limit} ticks")

    @property
    def game(self):
        return jax.tree.map(lambda x: np.asarray(x)[0], self.state.game)

    def ram(self, address):
        """A byte of the first cabinet's RAM image now."""
        return int(np.asarray(sim.ram_images(self.state.game))[0, address])

    def set(self, **fields):
        """Overwrite game-state fields of every cabinet."""
        game = self.state.game
        values = {k: jnp.broadcast_to(jnp.asarray(v, getattr(game, k).dtype),
                                      getattr(game, k).shape) for k, v in fields.items()}
        self.state = self.state.replace(game=game.replace(**values))
        return self

    def states(self, since=0):
        return [int(f.gamestate[0]) for f in self.frames[since:]]

    def start_game(self):
        """Coin, start, and the new game's tick: the level select is up, the cursor at 0."""
        self.step(coin=1).step().step(start=1)
        assert self.frames[-1].gamestate[0] == G.GS_NEW_GAME
        return self.step()


def _runs(states, code):
    runs, n = [], 0
    for s in [*states, None]:
        if s == code:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_attract_loop_and_demo_game():
    """Switched on, the cabinet shows the logo (0x1A, a 223-tick delay), then a demo game: not a
    real game ($0005 clear), one life, a level 1..8, the demo player moving on its own toward
    the enemy nearest the rim and firing; the demo ends with its life, then the attract screen
    (0x14, a delay of 0xA0 counted every other tick) and the logo again."""
    cab = Cabinets(seed=3)
    assert cab.states() == [G.GS_LOGO]
    cab.until(G.GS_NEW_GAME)
    assert _runs(cab.states(), G.GS_DELAY) == [G.LOGO_DELAY]
    cab.step()
    demo = cab.game
    assert demo.game_mode == 0 and demo.lives == G.DEMO_LIVES
    assert 0 <= demo.level < G.DEMO_LEVELS
    assert cab.states()[-1] == G.GS_LEVEL_STARTUP
    start = len(cab.frames)
    cab.until(G.GS_PLAYING)
    lanes, shots = set(), 0
    for _ in range(3000):
        cab.step()
        g = cab.game
        lanes.add(int(g.player_lane))
        shots += int((g.shot_depth > 0).sum())
        if cab.states()[-1] == G.GS_ATTRACT:
            break
    states = cab.states(start)
    assert G.GS_ATTRACT in states, "the demo ended"
    assert len(lanes) > 3 and shots > 0, "the demo player moves and fires"
    assert all(f.game_mode[0] == 0 for f in cab.frames), "never a real game"
    assert all(f.done[0] == 0 for f in cab.frames), "demo deaths are no terminal frames"
    ended = len(cab.frames) - 1                         # the frame showing 0x14
    cab.until(G.GS_LOGO, limit=400)
    assert cab.states(ended) == [G.GS_ATTRACT] + [G.GS_DELAY] * (
        len(cab.frames) - ended - 2) + [G.GS_LOGO]
    assert 319 <= len(cab.frames) - ended - 2 <= 320


def test_demo_game_ends_after_one_zoom():
    """'ends on death or after one zoom (0x18 -> 0x08) -> 0x14'."""
    cab = Cabinets(seed=1).until(G.GS_PLAYING)
    game = cab.state.game
    cab.set(pending_vid=np.zeros(G.NUM_PENDING, np.int32), spikes=np.zeros(16, np.int32))
    cab.state = cab.state.replace(game=cab.state.game.replace(
        enemies=game.enemies.replace(along=jnp.zeros_like(game.enemies.along))))
    since = len(cab.frames) - 1
    cab.until(G.GS_ATTRACT, limit=300)
    states = cab.states(since)
    assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == [
        G.GS_PLAYING, G.GS_ZOOM, G.GS_ZOOM_OFF_END, G.GS_ZOOM_ONTO_NEW, G.GS_GAME_OVER,
        G.GS_ATTRACT]


def test_coins_buy_credits_and_start_spends_one():
    cab = Cabinets()
    cab.step(start=1).step()
    assert cab.ram(M.CREDITS) == 0 and cab.frames[-1].game_mode[0] == 0, "no credit, no game"
    cab.step(3, coin=1)
    assert cab.ram(M.CREDITS) == 1, "a coin held down counts once"
    cab.step().step(coin=1).step()
    assert cab.ram(M.CREDITS) == 2
    cab.step(start=1)
    assert cab.frames[-1].gamestate[0] == G.GS_NEW_GAME
    assert cab.frames[-1].game_mode[0] == G.GAME_MODE_REAL and cab.ram(M.CREDITS) == 1
    cab.step(start=0).step(start=1)
    assert cab.ram(M.CREDITS) == 1, "start does nothing while a game runs"
    assert cab.states()[-2:] == [G.GS_LEVEL_SELECT, G.GS_LEVEL_SELECT]


def test_level_select_offers_up_to_the_last_level_and_pays_its_bonus():
    """0x00 of a real game sets $0127 to the last entry whose level does not exceed $0126 (at
    least entry 4, level 9); fire takes the entry under the cursor ($0200, held to $0127), the
    level starts and the first level's completion will pay the entry's bonus ($0102)."""
    cab = Cabinets()
    cab.step(coin=1).step().step(start=1, last_level=20)   # the client raises $0126
    cab.step()
    assert cab.states()[-1] == G.GS_LEVEL_SELECT
    entry = 9                                           # level 20 (0-based 19 <= 20)
    assert W.START_LEVELS[entry] <= 20 < W.START_LEVELS[entry + 1]
    assert cab.ram(M.MAX_START_INDEX) == entry
    cab.step(cursor=27).step(fire=1)                    # past the limit: held to $0127
    assert cab.states()[-1] == G.GS_LEVEL_STARTUP
    assert cab.frames[-1].level[0] == W.START_LEVELS[entry]
    assert cab.ram(M.START_BONUS_ENTRY) == entry


def test_level_select_runs_out_after_ten_seconds():
    cab = Cabinets().start_game()
    assert cab.ram(M.MAX_START_INDEX) == G.MIN_START_ENTRY
    since = len(cab.frames) - 1
    cab.until(G.GS_LEVEL_STARTUP)
    assert _runs(cab.states(since), G.GS_LEVEL_SELECT) == [G.LEVEL_SELECT_TICKS]
    assert cab.frames[-1].level[0] == 0 and cab.ram(M.START_BONUS_ENTRY) == 0


def _lose_every_life(cab):
    cab.until(G.GS_PLAYING)
    return cab.set(lives=1, player_state=G.PLAYER_STATE_KILLED).until(G.GS_HIGH_SCORE_CHECK)


def test_game_over_with_a_high_score_asks_for_initials():
    """Game over: 0x06 runs the end of game at once (the level reached goes to $0126), then the
    high-score check (0x10): a score above the table's last entry takes its place, 0x24, then
    the initials (0x12): each new fire press takes a letter, the third ends it; then 0x14,
    where the game flags are cleared."""
    cab = Cabinets(high_scores=[9000, 8000, 7000, 6000, 5000, 4000, 3000, 2000])
    cab.start_game().step(cursor=2, fire=1)             # entry 2: level 5
    cab.until(G.GS_PLAYING).set(score=6500)
    _lose_every_life(cab)
    assert cab.states()[-2] == G.GS_DEATH
    assert cab.ram(M.LAST_COMPLETED_LEVEL) == 4
    cab.step()
    assert cab.states()[-1] == G.GS_HIGH_SCORE_EFFECT
    assert cab.game.high_scores.tolist() == [9000, 8000, 7000, 6500, 6000, 5000, 4000, 3000]
    cab.step()
    assert cab.states()[-1] == G.GS_ENTER_INITIALS
    cab.step(5, fire=1)                                  # held: one letter
    assert cab.game.initials == 1
    cab.step().step(fire=1).step()
    assert cab.game.initials == 2 and cab.states()[-1] == G.GS_ENTER_INITIALS
    assert cab.frames[-1].game_mode[0] == G.GAME_MODE_REAL
    cab.step(fire=1)
    assert cab.states()[-1] == G.GS_ATTRACT
    cab.step()
    assert cab.frames[-1].game_mode[0] == 0 and cab.states()[-1] == G.GS_DELAY


def test_game_over_without_a_high_score_goes_to_attract_mode():
    cab = Cabinets(high_scores=[9000] * 8).start_game()
    _lose_every_life(cab)
    cab.step()
    assert cab.states()[-1] == G.GS_ATTRACT
    assert cab.game.high_scores.tolist() == [9000] * 8


def test_initials_time_out():
    """'Entering initials times out: a counter starting at 0x60 decremented every 32 ticks.'
    (Here from 2, not 0x60: the rule is the same, the wait shorter.)"""
    cab = Cabinets().start_game()
    cab.until(G.GS_PLAYING).set(score=100)
    _lose_every_life(cab).until(G.GS_ENTER_INITIALS)
    assert cab.game.initials_left == G.INITIALS_TIMEOUT == 0x60
    cab.set(initials_left=2)
    since = len(cab.frames) - 1
    cab.until(G.GS_ATTRACT, limit=100)
    assert 33 <= len(cab.frames) - 1 - since <= 64
    assert cab.game.initials == 0
