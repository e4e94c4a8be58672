"""Simulated MAME clients: games of the embedded simulator that speak the wire protocol.

Each game is one TCP client. Every tick the games' frames are sent (one per client), every
reply is awaited (lockstep, as MAME waits for the server), and the replies' fire, zap and
spinner drive the next simulator step. Used by `tempest-jax sim-client`, the end-to-end tests and
users without ROMs.

By default the games start directly on a level and restart on their own. With `cabinet=True`
each client is a whole simulated cabinet played as the Lua client plays MAME: the client's
game control (`sim.cabinet`) inserts a coin, presses start, selects the start level from the
replies' start settings, enters initials, and passes the replies' actions on during play.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax import sim
from tempest_jax.clients import ClientPool
from tempest_jax.sim import cabinet as C

# Reply spinner byte (-32..31) → the nearest of the 11 spinner levels (the simulator steps on
# joint actions; our server only ever sends exact levels).
_SPINNER_INDEX = np.argmin(np.abs(np.arange(-32, 32)[:, None] - F.SPINNER_LEVELS_ARRAY[None, :]),
                           axis=1)


def replies_of(replies: bytes) -> np.ndarray:
    """REPLY_DTYPE records of concatenated 5-byte replies, their actions validated."""
    records = np.frombuffer(replies, dtype=P.REPLY_DTYPE)
    for name, lo, hi in (("fire", 0, 1), ("zap", 0, 1), ("spinner", P.SPINNER_MIN,
                                                          P.SPINNER_MAX)):
        bad = (records[name] < lo) | (records[name] > hi)
        if bad.any():
            raise P.ReplyError(f"reply field {name} = {records[name][bad][0]} outside "
                               f"{lo}..{hi}", name)
    return records


def joint_of_replies(replies: bytes) -> np.ndarray:
    """Joint actions of concatenated 5-byte replies (validated)."""
    return _joint_of(replies_of(replies))


def _joint_of(records: np.ndarray) -> np.ndarray:
    sp = _SPINNER_INDEX[records["spinner"].astype(np.int64) + 32]
    return F.joint_index(records["fire"].astype(np.int64), records["zap"].astype(np.int64), sp)


@dataclasses.dataclass
class SimClientRun:
    ticks: int
    frames: int
    seconds: float
    # With record=True: per tick, the wire bytes sent by every client and the joint actions
    # received, shapes (ticks, clients) of bytes objects and ints.
    sent: list[list[bytes]] = dataclasses.field(default_factory=list)
    received: list[np.ndarray] = dataclasses.field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def frame_wire_bytes(frame) -> list[bytes]:
    """Wire bytes of every game's frame in a simulator frame batch."""
    host = jax.device_get(frame)
    header = {name: np.asarray(getattr(host, name)) for name in P.HEADER_FIELDS[1:]}
    buf = P.encode_frames(header, np.asarray(host.state))
    return [buf[i: i + P.FRAME_WIRE_SIZE] for i in range(0, len(buf), P.FRAME_WIRE_SIZE)]


def run_sim_clients(address: tuple[str, int], clients: int, ticks: int | None = None,
                    seconds: float | None = None, seed: int = 0, start_level: int = 1,
                    record: bool = False, reply_timeout: float = 10.0,
                    cabinet: bool = False) -> SimClientRun:
    """Play `clients` simulated games against the server for `ticks` ticks or `seconds`, or,
    with neither, until interrupted: a KeyboardInterrupt (Ctrl-C) then ends the play, which
    returns what was played. A reply missing for `reply_timeout` seconds raises TimeoutError.
    `cabinet`: whole cabinets switched on in attract mode (`start_level` unused: the replies
    choose it)."""
    run = SimClientRun(ticks=0, frames=0, seconds=0.0)
    try:
        _play(run, address, clients, ticks, seconds, seed, start_level, record, reply_timeout,
              cabinet)
    except KeyboardInterrupt:
        if ticks is not None or seconds is not None:
            raise
    return run


def _play(run: SimClientRun, address: tuple[str, int], clients: int, ticks: int | None,
          seconds: float | None, seed: int, start_level: int, record: bool,
          reply_timeout: float, cabinet: bool) -> None:
    """`run_sim_clients`' play, counted into `run` as it goes (an interrupted play keeps its
    count); the seconds are those from the first exchange."""
    if cabinet:
        state, frame = sim.cabinet_reset(jax.random.key(seed), clients)
        control = C.initial_control(clients)
    else:
        state, frame = sim.reset(jax.random.key(seed), clients, start_level)
    pool = ClientPool(address, clients, timeout=reply_timeout)
    start = time.perf_counter()
    try:
        while (ticks is None or run.ticks < ticks) and (
                seconds is None or time.perf_counter() - start < seconds):
            wire = frame_wire_bytes(frame)
            replies = replies_of(b"".join(pool.exchange(wire)))
            joint = _joint_of(replies)
            if record:
                run.sent.append(wire)
                run.received.append(joint)
            if cabinet:
                state, frame, control, _, _ = C.client_tick(
                    state, control,
                    *(replies[name].astype(np.int32) for name in P.REPLY_DTYPE.names))
            else:
                state, frame = sim.step(state, joint)
            run.ticks += 1
            run.frames += clients
    finally:
        pool.close()
        run.seconds = time.perf_counter() - start
