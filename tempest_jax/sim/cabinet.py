"""The Lua client's game control (`lua/control.lua`) in JAX, for simulated cabinets.

On MAME the Lua client decides, every processed frame, the inputs a player gives outside play:
a coin and the start button in attract mode, the level-select cursor (RAM writes) and one fire
press to confirm it, fire pulses for the high-score initials, and the server's action during
play. `decide` makes the same decisions from the same RAM image, so sim clients and the in-process
simulator can run whole cabinets (`sim.cabinet_step`) as MAME runs the real one; the cabinet
tests check it frame by frame against control.lua itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax import sim
from tempest_jax.sim import CabinetInputs
from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import waves as W

LEVEL_SELECT_SETTLE_FRAMES = 10         # cursor writes, then fire on the next frame
INITIALS_FIRE_PERIOD = 10               # one fire press every 10 frames takes a letter
ATTRACT_PERIOD = 60                     # attract mode: coin at phase 0, start at phase 30
COIN_HOLD_FRAMES = 4
START_PHASE, START_HOLD_FRAMES = 30, 3


@struct.dataclass
class ControlState:
    """control.lua's state per cabinet (int32[n] / bool[n])."""

    start_advanced: jax.Array
    start_level_min: jax.Array
    level_select_frames: jax.Array
    attract_frames: jax.Array
    frames: jax.Array
    prev_gamestate: jax.Array           # -1 before the first frame


def initial_control(n: int) -> ControlState:
    """Fresh control state, with control.lua's settings until the first reply: start_advanced
    true, start_level_min 13."""
    def full(value):                      # a buffer of its own each (rollouts donate them)
        return jnp.full(n, value, jnp.int32)

    return ControlState(start_advanced=jnp.ones(n, bool), start_level_min=full(13),
                        level_select_frames=full(0), attract_frames=full(0), frames=full(0),
                        prev_gamestate=full(-1))


def update_settings(c: ControlState, start_advanced, start_level_min) -> ControlState:
    """Reply bytes 3 and 4 (a start level outside 1..81 keeps the old one)."""
    ok = (start_level_min >= P.START_LEVEL_MIN) & (start_level_min <= P.START_LEVEL_MAX)
    shape = c.start_advanced.shape
    return c.replace(start_advanced=jnp.broadcast_to(jnp.asarray(start_advanced) != 0, shape),
                     start_level_min=jnp.where(ok, start_level_min, c.start_level_min))


def start_index(level0):
    """The largest start-table entry whose level is at most `level0` (0-based)."""
    return jnp.sum(jnp.asarray(W.START_LEVELS) <= jnp.asarray(level0)[..., None], axis=-1) - 1


@jax.jit
def decide(c: ControlState, images, cmd_fire, cmd_zap, cmd_spinner):
    """(control state, CabinetInputs, applied) for a batch of RAM images uint8[n, 0x400] and
    the server's last action: control.lua's `decide` and `apply` (applied: the server's action
    went to the game)."""
    ram = images.astype(jnp.int32)
    gs = ram[:, M.GAMESTATE]
    game_mode = ram[:, M.GAME_MODE]
    real = (game_mode & F.GAME_MODE_REAL_GAME_BIT) != 0
    credits = ram[:, M.CREDITS]
    last_level = ram[:, M.LAST_COMPLETED_LEVEL]
    max_start = ram[:, M.MAX_START_INDEX]
    zeros = jnp.zeros_like(gs)
    none = zeros - 1

    floor = c.start_level_min - 1
    write_last_level = jnp.where(last_level < floor, floor, none)

    initials = gs == G.GS_ENTER_INITIALS
    selecting = ~initials & (gs == G.GS_LEVEL_SELECT)
    attract = ~initials & ~selecting & ~real
    applied = ~initials & ~selecting & real & (
        (gs == F.GAMESTATE_PLAYING) | (gs == F.GAMESTATE_ZOOM))

    # Level select: the cursor for the first 10 frames, then one fire press.
    n = jnp.where(c.prev_gamestate != G.GS_LEVEL_SELECT, 0, c.level_select_frames)
    settling = selecting & (n < LEVEL_SELECT_SETTLE_FRAMES)
    index = start_index(floor)
    by_level = settling & ~c.start_advanced & (c.start_level_min > 1)
    cursor = jnp.where(settling & c.start_advanced, max_start, jnp.where(by_level, index, none))
    write_max_start = jnp.where(by_level, jnp.maximum(index, max_start), none)
    select_fire = selecting & (n == LEVEL_SELECT_SETTLE_FRAMES)
    level_select_frames = jnp.where(
        selecting, jnp.where(n <= LEVEL_SELECT_SETTLE_FRAMES, n + 1, n),
        jnp.where(attract, 0, c.level_select_frames))

    # Attract mode: a coin while there is no credit, else the start button.
    phase = c.attract_frames % ATTRACT_PERIOD
    coin = attract & (credits == 0) & (phase < COIN_HOLD_FRAMES)
    start = attract & (credits != 0) & (phase >= START_PHASE) & (
        phase < START_PHASE + START_HOLD_FRAMES)

    fire = ((initials & (c.frames % INITIALS_FIRE_PERIOD == 0)) | select_fire
            | (applied & (cmd_fire != 0)))
    inputs = CabinetInputs(
        fire=fire.astype(jnp.int32), zap=jnp.where(applied, cmd_zap, 0),
        spinner=jnp.where(applied, cmd_spinner, 0), start=start.astype(jnp.int32),
        coin=coin.astype(jnp.int32), last_level=write_last_level, max_start=write_max_start,
        cursor=cursor)
    c = c.replace(level_select_frames=level_select_frames,
                  attract_frames=c.attract_frames + attract, frames=c.frames + 1,
                  prev_gamestate=gs)
    return c, inputs, applied


@jax.jit
def client_tick(state: sim.SimState, c: ControlState, fire, zap, spinner, start_advanced,
                start_level_min):
    """One tick of cabinets played as MAME plays the real one: the server's reply to the
    current frames (fire, zap, spinner, start settings; int32[n] each) reaches the client's game
    control, whose inputs the cabinets then receive. Returns (state, frame, control state,
    CabinetInputs, applied)."""
    c = update_settings(c, start_advanced, start_level_min)
    c, inputs, applied = decide(c, sim.ram_images(state.game), fire, zap, spinner)
    state, frame = sim.cabinet_step(state, inputs, (fire, zap, spinner))
    return state, frame, c, inputs, applied
