"""Helpers for simulator tests: build one game in a chosen situation and step it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.sim import game as G
from tempest_jax.sim import waves as W

NOOP = 0


def action(fire=0, zap=0, spinner=0):
    return F.joint_index(fire, zap, F.SPINNER_INDEX_OF_LEVEL[spinner])


def playing(level0=0, lane=5, seed=1, pending=0):
    """One game in play (0x04) on a 0-based level, player on `lane`, nothing pending."""
    g = G.new_game(jnp.uint32(seed), level0)
    vid, seg = G.pending_queue(pending, jnp.arange(G.NUM_PENDING) % 16)
    return g.replace(gamestate=jnp.int32(G.GS_PLAYING), position=jnp.int32(lane * 16 + 8),
                     player_lane=jnp.int32(lane), player_state=jnp.int32((lane + 1) & 15),
                     pending_vid=vid, pending_seg=seg)


def with_enemy(g, slot, kind, lane, depth, **fields):
    """Put an enemy in `slot` (straight-climbing program unless given)."""
    e = g.enemies
    values = dict(along=depth * G.ONE, lane=lane, kind=kind, flipping=False, higher=False,
                  step=0, total=0, start_angle=0, down=False,
                  can_fire=False, cargo=0, chaser=False, timer=0, flips=0, holdoff=50,
                  pattern=W.PATTERN_STRAIGHT)
    values.update(fields)
    e = e.replace(**{k: getattr(e, k).at[slot].set(v) for k, v in values.items()})
    return g.replace(enemies=e)


def batch(g):
    """SimState with one game, extraction carry fresh."""
    game = jax.tree.map(lambda x: x[None], g)
    carry = jax.tree.map(lambda x: x[None], sim.initial_carry())
    return sim.SimState(game=game, carry=carry)


def run(g, actions):
    """Step one game through `actions`; returns (final SimState, list of numpy frames)."""
    state = batch(g)
    frames = []
    for a in actions:
        state, frame = sim.step(state, jnp.asarray([a], jnp.int32))
        frames.append(jax.tree.map(lambda x: np.asarray(x)[0], frame))
    return state, frames


def game_of(state):
    return jax.tree.map(lambda x: np.asarray(x)[0], state.game)
