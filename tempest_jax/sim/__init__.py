"""The embedded JAX Tempest simulator, vectorised over games.

    state, frame = reset(key, n, start_level=1)   # n games at a new game (gamestate 0x00)
    state, frame = step(state, actions)           # actions: int32[n] joint indices 0..43

    state, frame = cabinet_reset(key, n)          # n cabinets switched on (attract mode)
    state, frame = cabinet_step(state, inputs, commanded)   # inputs: CabinetInputs

One step is one game tick for every game. `reset`/`step` games are real games ($0005 bit 7
set) started directly on a level, and loop on their own: after game over the next tick starts a
new game (auto-reset). `cabinet_reset`/`cabinet_step` run whole cabinets instead: attract mode,
credits, start, level select, game over, high-score check and initials, driven by the buttons
and RAM writes a client gives (`sim.cabinet` decides them as the Lua client does). `frame` is an
`extract.Frame` of [n]-shaped fields named like the protocol header, plus `state`
(float32[n, 195]); `ram_images(state.game)` gives the RAM images (uint8[n, 0x400]) that the
Lua extraction reads on MAME. `features.expert_joint_action(frame.expert_target, frame.player_seg,
frame.is_open, frame.expert_fire, frame.expert_zap, xp=jnp)` is the expert's action and
`features.action_applied(frame.gamestate, frame.game_mode, frame.state)` says whether a frame's
action counts.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tempest_jax import features as F
from tempest_jax.sim import extract as _extract
from tempest_jax.sim import game as _game
from tempest_jax.sim import ram as _ram
from tempest_jax.sim.compiling import jit
from tempest_jax.sim.extract import ExtractCarry, Frame, initial_carry
from tempest_jax.sim.game import GameState

__all__ = ["CabinetInputs", "ExtractCarry", "Frame", "GameState", "SimState", "cabinet_reset",
           "cabinet_step", "expert_actions", "extract_batch", "initial_carry", "lower_step",
           "ram_images", "reset", "step"]


@struct.dataclass
class SimState:
    """A batch of games and their extraction carries (leading axis = game)."""

    game: GameState
    carry: ExtractCarry


@struct.dataclass
class CabinetInputs:
    """One tick's inputs to a batch of cabinets (int32[n] each): the buttons (0/1) and the
    spinner delta written to $0050, and the RAM writes a client makes before the tick at $0126
    (last level), $0127 (highest start entry) and $0200 (level-select cursor), -1 for none."""

    fire: jax.Array
    zap: jax.Array
    spinner: jax.Array
    start: jax.Array
    coin: jax.Array
    last_level: jax.Array
    max_start: jax.Array
    cursor: jax.Array


def _observe(game, carry, fire, zap, spinner):
    """Batched RAM image + extraction. The optimisation barriers ask XLA not to fuse the game
    tick into the RAM assembly (and that into the extraction): an earlier XLA, fusing them,
    recomputed producers per consumer and ran several times slower. This XLA's CPU pipeline
    removes barriers before fusion (docs/simulator.md, "Performance notes")."""
    images = jax.vmap(_ram.ram)(jax.lax.optimization_barrier(game))
    images = jax.lax.optimization_barrier(images)
    return jax.vmap(_extract.extract)(carry, images, fire, zap, spinner)


def _reset_batch(seeds, start_level):
    game = jax.vmap(_game.new_game)(seeds, start_level)
    carry = jax.vmap(lambda _: initial_carry())(seeds)
    zeros = jnp.zeros(seeds.shape, jnp.int32)
    carry, frame = _observe(game, carry, zeros, zeros, zeros)
    return SimState(game=game, carry=carry), frame


def _step_batch(state: SimState, actions):
    fire, zap, sp = F.decode_joint(actions)
    spinner = jnp.asarray(F.SPINNER_LEVELS_ARRAY, jnp.int32)[sp]
    game = jax.vmap(_game.tick)(state.game, fire, zap, spinner)
    carry, frame = _observe(game, state.carry, fire, zap, spinner)
    return SimState(game=game, carry=carry), frame


@jit(static_argnums=(1,))
def _reset(key, n, start_level):
    return _reset_batch(jax.random.bits(key, (n,), jnp.uint32), start_level)


def reset(key, n: int, start_level=1) -> tuple[SimState, Frame]:
    """n new games on the 1-based `start_level`, one for all games or one per game (int[n]);
    per-game seeds are drawn from `key`. A game keeps its start level for every new game."""
    levels = np.broadcast_to(np.asarray(start_level), (n,))
    if not np.issubdtype(levels.dtype, np.integer) or not ((levels >= 1) & (levels <= 99)).all():
        raise ValueError(f"start levels must be integers 1..99, got {start_level}")
    return _reset(key, n, jnp.asarray(levels - 1, jnp.int32))


_step = jit(_step_batch)


@jax.jit
def _cabinet_reset(seeds, high_scores):
    game = jax.vmap(_game.power_on)(seeds, high_scores)
    carry = jax.vmap(lambda _: initial_carry())(seeds)
    zeros = jnp.zeros(seeds.shape, jnp.int32)
    carry, frame = _observe(game, carry, zeros, zeros, zeros)
    return SimState(game=game, carry=carry), frame


def cabinet_reset(key, n: int, high_scores=None) -> tuple[SimState, Frame]:
    """n cabinets switched on: attract mode, no credits, the high-score table `high_scores`
    (int[8] best first, or [n, 8]; default all 0); per-cabinet seeds are drawn from `key`."""
    table = jnp.zeros(_game.NUM_HIGH_SCORES, jnp.int32) if high_scores is None else high_scores
    table = jnp.broadcast_to(jnp.asarray(table, jnp.int32), (n, _game.NUM_HIGH_SCORES))
    return _cabinet_reset(jax.random.bits(key, (n,), jnp.uint32), table)


@jax.jit
def _cabinet_step(state: SimState, inputs: CabinetInputs, commanded):
    game = jax.vmap(_game.poke)(state.game, inputs.last_level, inputs.max_start, inputs.cursor)
    game = jax.vmap(_game.tick)(game, inputs.fire, inputs.zap, inputs.spinner, inputs.start,
                                inputs.coin)
    carry, frame = _observe(game, state.carry, *commanded)
    return SimState(game=game, carry=carry), frame


def cabinet_step(state: SimState, inputs: CabinetInputs, commanded) -> tuple[SimState, Frame]:
    """Advance every cabinet one tick. `commanded` = (fire, zap, spinner) int32[n]: the action
    the client was told (the frame header echoes it), which `inputs` apply only where the
    client's game control lets them through."""
    commanded = tuple(jnp.asarray(c, jnp.int32) for c in commanded)
    for c in commanded:
        chex.assert_shape(c, state.game.gamestate.shape)
    return _cabinet_step(state, inputs, commanded)


def step(state: SimState, actions) -> tuple[SimState, Frame]:
    """Advance every game one tick with joint actions int32[n] (0..43)."""
    actions = jnp.asarray(actions, jnp.int32)
    chex.assert_shape(actions, state.game.gamestate.shape)
    return _step(state, actions)


def lower_step(state: SimState, actions) -> jax.stages.Lowered:
    """`step`'s program for these inputs, lowered as `step` lowers it (the same function and
    compiler options), for `.compile()` and a look at what XLA made of it."""
    return _step.lower(state, jnp.asarray(actions, jnp.int32))


@jit
def ram_images(game: GameState):
    """RAM images uint8[n, 0x400] of a batch of games."""
    return jax.vmap(_ram.ram)(game)


def extract_batch(carry: ExtractCarry, images, cmd_fire=0, cmd_zap=0, cmd_spinner=0):
    """Batched extraction: (carry, Frame) from RAM images uint8[n, 0x400]."""
    chex.assert_rank(images, 2)
    n = images.shape[0]

    def per_game(c, r, f, z, s):
        return _extract.extract(c, r, f, z, s)

    cmds = [jnp.broadcast_to(jnp.asarray(v, jnp.int32), (n,))
            for v in (cmd_fire, cmd_zap, cmd_spinner)]
    return jax.vmap(per_game)(carry, images, *cmds)


def expert_actions(frame: Frame):
    """The expert's joint action for each game of a frame batch (executed == stored)."""
    return F.expert_joint_action(frame.expert_target, frame.player_seg, frame.is_open != 0,
                                 frame.expert_fire, frame.expert_zap, xp=jnp)
