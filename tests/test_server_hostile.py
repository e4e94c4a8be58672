"""Property: no frame a hostile client sends can disturb the healthy clients served beside it.

A hostile client sends one frame of any length prefix (0–1,000) and any value count (0–300),
cut into pieces that arrive between the healthy clients' lockstep frames, so its bytes land in
the same server turns as theirs. The healthy clients must get exactly their replies, the replay
must hold exactly the transitions built from their frames, and afterwards the server still
serves a new client.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import threading

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server import FRAMES, connect, expected_reply, expert_policy, recv_exact, wait_for
from test_train_e2e import stored_transitions

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.config import ServerConfig, load_config
from tempest_jax.metrics import EpisodeStats
from tempest_jax.replay import Emission, NStepAccumulator, Replay, ReplaySink, scaled_reward
from tempest_jax.server import GameServer

HEALTHY = 3
TICKS = 6
CFG = load_config("smoke", ["replay.capacity=4096", "replay.min_size=1"])


def hostile_frame(length: int, values: int, fill: bytes) -> bytes:
    """A length prefix, then `length` bytes: a real frame's header with `values` as its value
    count, and state bytes as far as they go (`fill` past the real frame's end)."""
    body = bytearray(FRAMES[0] + fill)
    struct.pack_into(">H", body, 0, values)
    body = body[:length]
    if len(body) == P.PAYLOAD_SIZE and values == F.STATE_SIZE:
        struct.pack_into(">f", body, P.HEADER_SIZE, float("nan"))  # never a valid frame
    return struct.pack(">H", length) + bytes(body)


def expected_transitions(frames_by_client: list[list[bytes]]) -> list[tuple]:
    """Each healthy client's frames and the expert's replies through a fresh accumulator."""
    acc = NStepAccumulator.from_config(CFG.replay, HEALTHY)
    emissions, obs_by_serial = [], {}
    streams = np.arange(HEALTHY)
    for t in range(TICKS):
        batch = P.decode_payloads(b"".join(frames[t] for frames in frames_by_client))
        output = expert_policy(streams, batch)
        done = batch.done != 0
        emissions.append(acc.push(
            streams, batch.state.astype(np.float16), np.where(done, 0, output.joint),
            scaled_reward(batch.obj_reward, batch.subj_reward, CFG.reward), done,
            output.is_expert, F.action_applied(batch.gamestate, batch.game_mode, batch.state)))
    emissions.append(acc.truncate(streams))
    e = Emission.concatenate(emissions)
    for i, row in enumerate(e.obs):
        obs_by_serial[e.first_serial + i] = row.tobytes()
    return sorted((obs_by_serial[s], int(a), float(r), float(d), obs_by_serial[n])
                  for s, n, a, r, d in zip(e.start, e.next, e.action, e.ret, e.discount))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(length=st.integers(0, 1000), values=st.integers(0, 300),
       fill=st.binary(min_size=200, max_size=200),
       cuts=st.lists(st.integers(0, 1002), max_size=4),
       at_tick=st.lists(st.integers(0, TICKS - 1), min_size=5, max_size=5),
       offset=st.integers(0, len(FRAMES) - HEALTHY * TICKS))
def test_a_hostile_frame_never_reaches_the_healthy_clients_batch(length, values, fill, cuts,
                                                                 at_tick, offset):
    wire = hostile_frame(length, values, fill)
    bounds = sorted({0, len(wire), *(min(c, len(wire)) for c in cuts)})
    pieces = [wire[a:b] for a, b in itertools.pairwise(bounds)]
    ticks = sorted(at_tick[:len(pieces)])
    frames_by_client = [FRAMES[offset + k * TICKS: offset + (k + 1) * TICKS]
                        for k in range(HEALTHY)]

    cfg = ServerConfig(port=0, max_clients=8, batch_wait_ms=5.0, stall_timeout_s=60.0)
    replay = Replay(CFG.replay, cfg.max_clients, limiter_slack=0)
    sink = ReplaySink(replay, CFG.reward, EpisodeStats(cfg.max_clients), lambda: 0)
    server = GameServer(cfg, expert_policy, sink)
    thread = threading.Thread(target=server.serve_forever, name="server", daemon=True)
    thread.start()
    socks = []
    try:
        healthy = [connect(server) for _ in range(HEALTHY)]
        socks += healthy
        # Client ids follow connection order: the healthy ones are streams 0..HEALTHY-1.
        assert wait_for(lambda: server.stats.clients_total == HEALTHY)
        hostile = connect(server)
        socks.append(hostile)
        replies = [[] for _ in range(HEALTHY)]
        for t in range(TICKS):
            for piece, tick in zip(pieces, ticks):
                if tick == t:
                    with contextlib.suppress(OSError):  # already dropped by the server
                        hostile.sendall(piece)
            for k, sock in enumerate(healthy):
                payload = frames_by_client[k][t]
                sock.sendall(struct.pack(">H", len(payload)) + payload)
            for k, sock in enumerate(healthy):
                replies[k].append(recv_exact(sock, P.REPLY_SIZE))
        for k in range(HEALTHY):
            assert replies[k] == [expected_reply(p) for p in frames_by_client[k]]
        assert thread.is_alive()
        newcomer = connect(server)
        socks.append(newcomer)
        payload = FRAMES[-1]
        newcomer.sendall(struct.pack(">H", len(payload)) + payload)
        assert recv_exact(newcomer, P.REPLY_SIZE) == expected_reply(payload)
        newcomer.close()
        for sock in healthy:
            sock.close()
        assert wait_for(lambda: server.stats.clients_connected <= 1, timeout=30)
    finally:
        for sock in socks:
            sock.close()
        server.stop()
        thread.join(timeout=30)
        sink.close()
    assert not thread.is_alive()
    assert server.stats.frames == HEALTHY * TICKS + 1
    # The newcomer's single frame has no successor, so it forms no transition.
    assert stored_transitions(replay.buffer) == expected_transitions(frames_by_client)


def test_only_a_whole_valid_frame_passes_the_edge_check():
    """Every length prefix 0–1,000 with the value counts around 195, and every value count
    0–300 at the full length: the splitter and `validate_payload` together accept exactly the
    819-byte frames with 195 values, and reject everything else with a ProtocolError."""
    fill = bytes(range(256)) * 4
    cases = [(length, values) for length in range(1001) for values in (0, 1, 194, 195, 196, 300)]
    cases += [(P.PAYLOAD_SIZE, values) for values in range(301)]
    for length, values in cases:
        body = bytearray(FRAMES[0] + fill)[:length]
        if len(body) >= 2:
            struct.pack_into(">H", body, 0, values)
        wire = struct.pack(">H", length) + bytes(body)
        try:
            payloads = P.FrameSplitter().feed(wire)
            for payload in payloads:
                P.validate_payload(payload)
        except P.ProtocolError:
            accepted = False
        else:
            accepted = bool(payloads)
        assert accepted == (length == P.PAYLOAD_SIZE and values == F.STATE_SIZE), (length, values)
