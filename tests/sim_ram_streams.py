"""Simulator RAM-image sequences with the JAX extraction of every image, for comparing the Lua
extraction with it (tests/test_lua_crosscheck.py, tests/test_lua_mame_bridge.py).

Games start on a spread of levels (every tube shape, open and closed tubes, later enemy types)
and are played by a mix of the expert and random actions, so the sequences contain level play,
zooms, deaths, game overs and restarts. One jitted scan produces all steps.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax import sim

# uint8 flags (bit 0: fresh carried state), cmd_fire, cmd_zap, int8 cmd_spinner, uint16 frame:
# the record header tests/lua/tool.lua's extract_stream reads before each RAM image.
RECORD_HEADER_DTYPE = np.dtype([("flags", "u1"), ("cmd_fire", "u1"), ("cmd_zap", "u1"),
                                ("cmd_spinner", "i1"), ("frame", ">u2")])
LUA_OUTPUT_DTYPE = np.dtype([("wire", "u1", (P.FRAME_WIRE_SIZE,)), ("expert_joint", "u1"),
                             ("violations", ">u2")])


@dataclasses.dataclass
class Streams:
    """Game-major sequences: record i is step `step[i]` of game `game[i]`."""

    images: np.ndarray        # uint8[N, RAM_SIZE]
    wire: np.ndarray          # uint8[N, 821]: the JAX frame as a MAME client would send it
    expert_joint: np.ndarray  # int[N]
    header: np.ndarray        # RECORD_HEADER_DTYPE[N]
    game: np.ndarray
    step: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def records(self) -> bytes:
        """The extract_stream input: record header + RAM image per frame."""
        out = np.empty(len(self), dtype=[("header", RECORD_HEADER_DTYPE),
                                         ("ram", "u1", (self.images.shape[1],))])
        out["header"], out["ram"] = self.header, self.images
        return out.tobytes()


@partial(jax.jit, static_argnums=(3,))
def _rollout(state, frame, key, steps, random_share):
    n = state.game.gamestate.shape[0]

    def body(carry, key):
        state, frame = carry
        k_pick, k_action = jax.random.split(key)
        expert = sim.expert_actions(frame)
        # random fire and spinner, never zap: the superzapper stays the expert's, so its advice
        # (given only while zaps remain) shows up in the streams
        k_fire, k_spin = jax.random.split(k_action)
        random = F.joint_index(jax.random.randint(k_fire, (n,), 0, 2), 0,
                               jax.random.randint(k_spin, (n,), 0, F.NUM_SPINNER))
        action = jnp.where(jax.random.uniform(k_pick, (n,)) < random_share, random, expert)
        state, frame = sim.step(state, action)
        return (state, frame), (sim.ram_images(state.game), frame)

    _, (images, frames) = jax.lax.scan(body, (state, frame), jax.random.split(key, steps))
    return images, frames


def _concat(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *trees)


def generate(start_levels, steps: int, seed: int = 0, random_share=None) -> Streams:
    """One game per start level, each `steps` ticks after its reset frame.

    `random_share[g]` is the probability that game g plays a random action instead of the
    expert's (default: spread over 0.05..0.6, so some games die often and some progress)."""
    n = len(start_levels)
    key = jax.random.PRNGKey(seed)
    resets = [sim.reset(k, 1, int(level))
              for k, level in zip(jax.random.split(key, n), start_levels)]
    state = _concat([r[0] for r in resets])
    first = _concat([r[1] for r in resets])
    if random_share is None:
        random_share = np.linspace(0.05, 0.6, n)
    images, frames = _rollout(state, first, jax.random.fold_in(key, 1), steps,
                              jnp.asarray(random_share, jnp.float32))
    # time-major [steps, n] → game-major, with each game's reset frame first
    all_images = np.concatenate([np.asarray(sim.ram_images(state.game))[None],
                                 np.asarray(images)])
    fields = {name: np.concatenate([np.asarray(getattr(first, name))[None],
                                    np.asarray(getattr(frames, name))])
              for name in (*P.HEADER_FIELDS[1:], "state")}

    def game_major(a):
        return np.swapaxes(a, 0, 1).reshape((n * (steps + 1), *a.shape[2:]))

    all_images = game_major(all_images)
    fields = {k: game_major(v) for k, v in fields.items()}
    state_values = fields.pop("state")
    wire = np.frombuffer(P.encode_frames(fields, state_values), dtype=np.uint8).reshape(
        -1, P.FRAME_WIRE_SIZE)
    joint = np.asarray(F.expert_joint_action(fields["expert_target"], fields["player_seg"],
                                             fields["is_open"] != 0, fields["expert_fire"],
                                             fields["expert_zap"]))
    header = np.zeros(len(all_images), RECORD_HEADER_DTYPE)
    step = np.tile(np.arange(steps + 1), n)
    header["flags"] = step == 0
    for name in ("cmd_fire", "cmd_zap", "cmd_spinner", "frame"):
        header[name] = fields[name]
    return Streams(images=all_images, wire=wire, expert_joint=joint, header=header,
                   game=np.repeat(np.arange(n), steps + 1), step=step)


def first_difference(ours: bytes, theirs: bytes) -> str:
    """Name the first differing field of two 821-byte wire frames ('' when equal)."""
    a = np.frombuffer(ours, dtype=P.WIRE_DTYPE)[0]
    b = np.frombuffer(theirs, dtype=P.WIRE_DTYPE)[0]
    for name in P.WIRE_DTYPE.names:
        if name == "state":
            for i in np.flatnonzero(a["state"].view(">u4") != b["state"].view(">u4")):
                return (f"state[{i}] {F.describe_index(int(i))}: "
                        f"{a['state'][i]!r} vs {b['state'][i]!r}")
        elif a[name].tobytes() != b[name].tobytes():
            return f"header {name}: {a[name]!r} vs {b[name]!r}"
    return ""
