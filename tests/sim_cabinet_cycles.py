"""Simulated cabinets driven by the client's game control, for tests/test_lua_cabinet.py.

Each cabinet is switched on in attract mode and played the way a MAME cabinet is: every tick
the client extracts the frame from the RAM image, the server replies (here: the expert's action
while the cabinet's server wants play, else nothing; with the cabinet's start settings), and
the client's game control (`sim.cabinet`, the JAX form of lua/control.lua) decides the inputs:
coin and start in attract mode, the level-select cursor and fire, fire for the initials, the
server's action during play. One jitted scan runs all cabinets; it records, per tick, the RAM
image the client read, the server's reply, the frame and the inputs the cabinet received.
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
from tempest_jax.sim import cabinet as C
from tempest_jax.sim import waves as W

# The tool's cabinet_stream record: uint8 flags (bit 0: a new cabinet), the 5-byte reply.
RECORD_HEADER_DTYPE = np.dtype([("flags", "u1"), ("reply", P.REPLY_DTYPE)])
# Its output per record: frame bytes, expert joint, clamped values, the applied inputs.
LUA_OUTPUT_DTYPE = np.dtype([("wire", "u1", (P.FRAME_WIRE_SIZE,)), ("expert_joint", "u1"),
                             ("violations", ">u2"), ("fire", "u1"), ("zap", "u1"),
                             ("spinner", "i1"), ("start", "u1"), ("coin", "u1"),
                             ("last_level", ">i2"), ("max_start", ">i2"), ("cursor", ">i2"),
                             ("applied", "u1")])
INPUT_NAMES = ("fire", "zap", "spinner", "start", "coin", "last_level", "max_start", "cursor")


@dataclasses.dataclass(frozen=True)
class Cabinet:
    """One cabinet's server: the start settings it replies with, and how long it plays: the
    expert's action until the score reaches `play_until` on the first level (0: never)."""

    start_level_min: int
    start_advanced: bool = False
    play_until: int = 0


@dataclasses.dataclass
class Cycles:
    """Time-major records [tick, cabinet] of a run (tick t: the image the client read)."""

    cabinets: list[Cabinet]
    images: np.ndarray        # uint8[T, n, 0x400]
    replies: np.ndarray       # REPLY_DTYPE[T, n]
    frames: dict              # Frame field -> [T, n, ...]
    inputs: dict              # CabinetInputs field -> int[T, n]
    applied: np.ndarray       # bool[T, n]
    initials: np.ndarray      # int[T, n]: initials the game has taken (after tick t)

    def wire(self, cabinet: int) -> np.ndarray:
        """The frames of one cabinet as the client sends them: uint8[T, 821]."""
        header = {name: self.frames[name][:, cabinet] for name in P.HEADER_FIELDS[1:]}
        buf = P.encode_frames(header, self.frames["state"][:, cabinet])
        return np.frombuffer(buf, np.uint8).reshape(-1, P.FRAME_WIRE_SIZE)

    def records(self) -> bytes:
        """The cabinet_stream input, cabinet after cabinet."""
        steps, n = self.replies.shape
        out = np.empty((n, steps), dtype=[("header", RECORD_HEADER_DTYPE),
                                          ("ram", "u1", (self.images.shape[2],))])
        out["header"]["flags"] = 0
        out["header"]["flags"][:, 0] = 1
        out["header"]["reply"] = self.replies.T
        out["ram"] = np.swapaxes(self.images, 0, 1)
        return out.tobytes()


@partial(jax.jit, static_argnums=(3,))
def _rollout(state, frame, control, steps, advanced, level_min, play_until):
    first_level = jnp.asarray(W.START_LEVELS)[C.start_index(level_min - 1)]

    def body(carry, _):
        state, frame, control = carry
        images = sim.ram_images(state.game)
        fire, zap, sp = F.decode_joint(sim.expert_actions(frame))
        playing = (frame.level == first_level) & (frame.score < play_until)
        reply = (jnp.where(playing, fire, 0), jnp.where(playing, zap, 0),
                 jnp.where(playing, jnp.asarray(F.SPINNER_LEVELS_ARRAY, jnp.int32)[sp], 0))
        state, next_frame, control, inputs, applied = C.client_tick(
            state, control, *reply, advanced, level_min)
        return (state, next_frame, control), (images, reply, frame, inputs, applied,
                                              state.game.initials)

    return jax.lax.scan(body, (state, frame, control), None, length=steps)[1]


def run(cabinets: list[Cabinet], steps: int, seed: int = 0, high_scores=None) -> Cycles:
    n = len(cabinets)
    state, frame = sim.cabinet_reset(jax.random.key(seed), n, high_scores)
    advanced = jnp.asarray([c.start_advanced for c in cabinets])
    level_min = jnp.asarray([c.start_level_min for c in cabinets], jnp.int32)
    play_until = jnp.asarray([c.play_until for c in cabinets], jnp.int32)
    images, reply, frames, inputs, applied, initials = jax.device_get(_rollout(
        state, frame, C.initial_control(n), steps, advanced, level_min, play_until))
    replies = np.zeros((steps, n), P.REPLY_DTYPE)
    for name, value in zip(("fire", "zap", "spinner"), reply):
        replies[name] = value
    replies["start_advanced"] = np.asarray(advanced)
    replies["start_level_min"] = np.asarray(level_min)
    return Cycles(cabinets=list(cabinets), images=np.asarray(images), replies=replies,
                  frames={k: np.asarray(v) for k, v in vars(frames).items()},
                  inputs={k: np.asarray(getattr(inputs, k)) for k in INPUT_NAMES},
                  applied=np.asarray(applied), initials=np.asarray(initials))
