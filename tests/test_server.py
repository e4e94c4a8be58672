"""The game server over loopback: lockstep serving, batching, and faults that drop one client."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import numpy as np
import pytest

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.bench.protocol_bench import random_wire_frames
from tempest_jax.config import ServerConfig
from tempest_jax.policy import PolicyOutput
from tempest_jax.server import GameServer

FRAMES = P.FrameSplitter().feed(random_wire_frames(64, seed=1))


def expert_policy(client_ids, batch):
    joint = F.expert_joint_action(batch.expert_target, batch.player_seg, batch.is_open,
                                  batch.expert_fire, batch.expert_zap)
    return PolicyOutput(joint=joint.astype(np.int64), is_expert=np.ones(len(joint), bool))


class RecordingSink:
    def __init__(self):
        self.frames: dict[int, list[bytes]] = {}
        self.disconnects: list[int] = []
        self.lock = threading.Lock()

    def push(self, client_ids, batch, output):
        with self.lock:
            for i, cid in enumerate(client_ids):
                record = (batch.frame[i], batch.state[i].tobytes(), int(output.joint[i]))
                self.frames.setdefault(int(cid), []).append(record)

    def disconnect(self, client_id):
        with self.lock:
            self.disconnects.append(client_id)


@pytest.fixture
def server():
    cfg = ServerConfig(port=0, max_clients=8, stall_timeout_s=0.5, handshake_timeout_s=0.5,
                       batch_wait_ms=0.5)
    sink = RecordingSink()
    srv = GameServer(cfg, expert_policy, sink)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, sink
    srv.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


def connect(srv, handshake=True) -> socket.socket:
    sock = socket.create_connection(srv.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if handshake:
        sock.sendall(P.encode_handshake())
    return sock


def recv_exact(sock, n) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def lockstep(sock, payloads) -> list[bytes]:
    replies = []
    for payload in payloads:
        sock.sendall(struct.pack(">H", len(payload)) + payload)
        replies.append(recv_exact(sock, P.REPLY_SIZE))
    return replies


def closed_by_server(sock) -> bool:
    """The server closed this connection: an orderly EOF, or a reset when it closed with our
    unread bytes (the handshake) in its receive buffer."""
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:
        return True


def expected_reply(payload: bytes) -> bytes:
    frame = P.parse_payload(payload)
    joint = 0 if frame.done else int(F.expert_joint_action(
        frame.expert_target, frame.player_seg, frame.is_open, frame.expert_fire,
        frame.expert_zap))
    action = F.action_of_joint(joint)
    return P.encode_reply(P.Reply(action.fire, action.zap, action.spinner, 1, 13))


def wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_lockstep_clients_get_exact_replies(server):
    srv, sink = server
    socks = [connect(srv) for _ in range(4)]
    results = [None] * 4

    def play(k):
        results[k] = lockstep(socks[k], FRAMES[k * 16:(k + 1) * 16])

    threads = [threading.Thread(target=play, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for k in range(4):
        assert results[k] == [expected_reply(p) for p in FRAMES[k * 16:(k + 1) * 16]]
    assert srv.stats.frames == 64
    # The sink takes a batch just after its replies are sent.
    assert wait_for(lambda: sorted(len(v) for v in sink.frames.values()) == [16] * 4)
    for s in socks:
        s.close()
    assert wait_for(lambda: len(sink.disconnects) == 4)
    assert sum(srv.stats.drops.values()) == 0


def test_chunked_frame_one_byte_at_a_time(server):
    srv, _sink = server
    sock = connect(srv)
    wire = struct.pack(">H", len(FRAMES[0])) + FRAMES[0]
    for i in range(len(wire)):
        sock.sendall(wire[i:i + 1])
    assert recv_exact(sock, 5) == expected_reply(FRAMES[0])
    sock.close()


def _corrupt_state(payload: bytes, value: float) -> bytes:
    data = bytearray(payload)
    struct.pack_into(">f", data, P.HEADER_SIZE + 4 * 100, value)
    return bytes(data)


def _wrong_count(payload: bytes) -> bytes:
    data = bytearray(payload)
    struct.pack_into(">H", data, 0, 194)
    return bytes(data)


FAULTS = {
    "garbage": b"\x12\x34" + b"\xab" * 900,  # length prefix 0x1234 > 819
    "oversized": struct.pack(">H", 5000) + b"\x00" * 100,
    "undersized": struct.pack(">H", 10) + b"\x00" * 10,
    "wrong value count": struct.pack(">H", 819) + _wrong_count(FRAMES[0]),
    "nan state": struct.pack(">H", 819) + _corrupt_state(FRAMES[0], float("nan")),
    "out of range state": struct.pack(">H", 819) + _corrupt_state(FRAMES[0], 1.5),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_input_drops_only_that_client(server, fault):
    srv, sink = server
    healthy = connect(srv)
    first = lockstep(healthy, FRAMES[:3])
    bad = connect(srv)
    bad.sendall(FAULTS[fault])
    # The bad client is closed without a reply; the healthy one keeps being served meanwhile.
    bad.settimeout(5)
    assert closed_by_server(bad)
    rest = lockstep(healthy, FRAMES[3:10])
    assert first + rest == [expected_reply(p) for p in FRAMES[:10]]
    healthy_id = 0
    assert wait_for(lambda: [r[0] for r in sink.frames[healthy_id]] == [
        P.parse_payload(p).frame for p in FRAMES[:10]])
    assert sum(srv.stats.drops.values()) == 1
    healthy.close()


def test_stalled_and_vanished_clients_are_dropped(server):
    srv, _sink = server
    healthy = connect(srv)
    stalled = connect(srv)
    stalled.sendall(struct.pack(">H", 819) + FRAMES[0][:400])  # half a frame, then silence
    vanished = connect(srv)
    vanished.sendall(struct.pack(">H", 819) + FRAMES[1][:100])
    vanished.close()  # killed mid-frame
    silent = connect(srv, handshake=False)  # never completes the handshake
    replies = []
    for i in range(20):
        replies += lockstep(healthy, FRAMES[i:i + 1])
        time.sleep(0.05)
    assert replies == [expected_reply(p) for p in FRAMES[:20]]
    assert wait_for(lambda: srv.stats.clients_connected == 1)
    drops = srv.stats.drops
    assert drops["stalled mid-frame"] == 1
    assert drops["disconnected mid-frame"] == 1
    assert drops["stalled before completing the handshake"] == 1
    for s in (healthy, stalled, silent):
        s.close()


def test_a_client_far_ahead_of_its_replies_is_dropped(server):
    srv, _sink = server
    healthy = connect(srv)
    flooder = connect(srv)
    flooder.settimeout(5)
    burst = b"".join(struct.pack(">H", len(p)) + p for p in FRAMES) * 40  # 2,560 frames
    with contextlib.suppress(OSError):  # the server closes it mid-burst
        flooder.sendall(burst)
    assert wait_for(lambda: srv.stats.drops["sent too far ahead"] == 1)
    assert lockstep(healthy, FRAMES[:3]) == [expected_reply(p) for p in FRAMES[:3]]
    assert srv.stats.clients_connected == 1
    assert srv.stats.queued_frames == 0, "the dropped client's queue left the count"
    for s in (healthy, flooder):
        s.close()


def test_queue_depth_counts_frames_awaiting_replies():
    gate = threading.Event()

    def gated_policy(client_ids, batch):
        gate.wait(5)
        return expert_policy(client_ids, batch)

    srv = GameServer(ServerConfig(port=0, batch_wait_ms=0.5), gated_policy, RecordingSink())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    sock = connect(srv)
    try:
        sock.sendall(b"".join(struct.pack(">H", len(p)) + p for p in FRAMES[:5]))
        # One frame is in the held batch at most; the rest wait in the client's queue.
        assert wait_for(lambda: srv.stats.queued_frames >= 4)
        gate.set()
        assert [recv_exact(sock, P.REPLY_SIZE) for _ in range(5)] == [
            expected_reply(p) for p in FRAMES[:5]]
        assert wait_for(lambda: srv.stats.queued_frames == 0)
        first = srv.stats.snapshot()
        assert first["queued_frames"] == 0 and first["queued_frames_peak"] in (4, 5)
        assert srv.stats.snapshot()["queued_frames_peak"] == 0, "each snapshot starts a window"
    finally:
        gate.set()
        sock.close()
        srv.stop()
        thread.join(timeout=5)


def test_client_limit_refuses_extra_connections(server):
    srv, _sink = server
    socks = [connect(srv) for _ in range(8)]
    lockstep(socks[0], FRAMES[:1])
    extra = connect(srv)
    extra.settimeout(5)
    assert wait_for(lambda: srv.stats.drops["client limit"] == 1)
    assert closed_by_server(extra)
    assert lockstep(socks[7], FRAMES[:2]) == [expected_reply(p) for p in FRAMES[:2]]
    for s in [*socks, extra]:
        s.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_flapping_clients_do_not_disturb_a_healthy_one_and_memory_stays_flat():
    cfg = ServerConfig(port=0, max_clients=40, batch_wait_ms=0.2)
    sink = RecordingSink()
    srv = GameServer(cfg, expert_policy, sink)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    healthy = connect(srv)
    sent = []
    rss = []
    try:
        for round_ in range(12):
            flappers = [connect(srv) for _ in range(32)]
            for k, sock in enumerate(flappers):
                lockstep(sock, FRAMES[k % 8: k % 8 + 1 + round_ % 3])
            payloads = FRAMES[(round_ * 5) % 60:(round_ * 5) % 60 + 4]
            assert lockstep(healthy, payloads) == [expected_reply(p) for p in payloads]
            sent += payloads
            for sock in flappers:
                sock.close()
            assert wait_for(lambda: srv.stats.clients_connected == 1)
            rss.append(_rss_bytes())
        healthy_frames = [r[0] for r in sink.frames[0]]
        assert healthy_frames == [P.parse_payload(p).frame for p in sent]
        assert sum(srv.stats.drops.values()) == 0
        assert srv.stats.clients_total == 1 + 12 * 32
        assert len(sink.disconnects) == 12 * 32
        # After warm-up, repeated waves of 32 connections leave no growing residue.
        assert rss[-1] - rss[3] < 4 << 20, [r >> 20 for r in rss]
    finally:
        healthy.close()
        srv.stop()
        thread.join(timeout=5)


def test_async_policy_runs_while_the_previous_batch_goes_to_the_sink():
    """With an `AsyncPolicy` the server starts batch N+1's inference, then hands batch N to the
    sink, then waits for N+1's actions; the last batch follows once no frame comes, and a
    client's disconnect reaches the sink after its last frame."""
    events = []

    class Policy:
        def start(self, client_ids, batch):
            events.append(("start", int(batch.frame[0])))
            output = expert_policy(client_ids, batch)

            def wait():
                events.append(("wait", int(batch.frame[0])))
                return output
            return wait

        def __call__(self, client_ids, batch):
            return self.start(client_ids, batch)()

    class Sink:
        def push(self, client_ids, batch, output):
            events.append(("push", int(batch.frame[0])))

        def disconnect(self, client_id):
            events.append(("disconnect", client_id))

    srv = GameServer(ServerConfig(port=0, batch_wait_ms=50), Policy(), Sink())
    try:
        sock = connect(srv)
        payloads = FRAMES[:4]
        for payload in payloads:  # each frame is in the socket before the server polls
            sock.sendall(struct.pack(">H", len(payload)) + payload)
            while srv.poll(1.0) == 0:
                pass
            assert recv_exact(sock, P.REPLY_SIZE) == expected_reply(payload)
        sock.close()
        end = time.monotonic() + 5
        while ("disconnect", 0) not in events and time.monotonic() < end:
            srv.poll(0.1)
    finally:
        srv.close()
    f = [P.parse_payload(p).frame for p in payloads]
    assert events == [("start", f[0]), ("wait", f[0]),
                      ("start", f[1]), ("push", f[0]), ("wait", f[1]),
                      ("start", f[2]), ("push", f[1]), ("wait", f[2]),
                      ("start", f[3]), ("push", f[2]), ("wait", f[3]),
                      ("push", f[3]), ("disconnect", 0)]


def test_a_client_dropped_while_its_frame_waits_for_the_batch_leaves_no_empty_batch():
    """A client's valid frame is queued, the server waits (its wait budget) for another client,
    and meanwhile the first one sends garbage and is dropped with its frame: the batch the
    server then answers is empty, and must not reach the policy or the sink."""
    batch_sizes = []

    def policy(client_ids, batch):
        batch_sizes.append(len(batch))
        return expert_policy(client_ids, batch)

    sink = RecordingSink()
    srv = GameServer(ServerConfig(port=0, batch_wait_ms=1000), policy, sink)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    waiting, bad = connect(srv), connect(srv)
    try:
        assert wait_for(lambda: srv.stats.clients_connected == 2)
        bad.sendall(struct.pack(">H", len(FRAMES[0])) + FRAMES[0])
        assert wait_for(lambda: srv.stats.queued_frames == 1)
        time.sleep(0.2)  # the server is in its wait budget for the other client now
        bad.sendall(b"\xff\xff")  # a length prefix beyond any frame
        assert wait_for(lambda: srv.stats.drops["bad framing"] == 1)
        time.sleep(1.2)  # the wait budget ends with no frame ready
        assert lockstep(waiting, FRAMES[1:3]) == [expected_reply(p) for p in FRAMES[1:3]]
        assert thread.is_alive()
        assert batch_sizes == [1, 1], "the policy never sees an empty batch"
    finally:
        waiting.close()
        bad.close()
        srv.stop()
        thread.join(timeout=5)
