"""Access control of the game server over loopback: the client-network allowlist, the shared
token in the handshake, idle and half-open connections timing out, and a connection flood beyond
the client limit refused while the clients already connected keep being served.

Loopback stands in for other hosts: Linux routes all of 127.0.0.0/8 to `lo`, so a client bound
to 127.0.0.2 reaches a server on 127.0.0.1 from a second address.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import numpy as np
import pytest
from test_mame_cmd import fake_mame
from test_server import (
    FRAMES,
    RecordingSink,
    closed_by_server,
    expected_reply,
    expert_policy,
    lockstep,
    recv_exact,
    wait_for,
)

from tempest_jax import protocol as P
from tempest_jax.cli import main
from tempest_jax.clients import ClientPool
from tempest_jax.config import TOKEN_ENV, ConfigError, ServerConfig, load_config
from tempest_jax.server import GameServer

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-t\u00f6ken"
OTHER_HOST = "127.0.0.2"
# Kept small: on loopback an occasional connect waits out a 1 s SYN retry when a new port meets
# a closed connection's TIME_WAIT, which slows the flood, not the server.
RAPID_CONNECTIONS = 100


@contextlib.contextmanager
def serving(**settings):
    cfg = ServerConfig(**{"port": 0, "max_clients": 8, "handshake_timeout_s": 0.5,
                          "stall_timeout_s": 0.5, "batch_wait_ms": 0.5, **settings})
    sink = RecordingSink()
    srv = GameServer(cfg, expert_policy, sink)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv, sink
    finally:
        srv.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()


def open_client(srv, handshake: bytes | None = P.client_handshake(),
                source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(srv.address, timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if handshake is not None:
        sock.sendall(handshake)
    return sock


def wire(payloads) -> bytes:
    return b"".join(struct.pack(">H", len(p)) + p for p in payloads)


def assert_refused(sock, *, then_send: bytes = b"") -> None:
    """The server closes `sock` without a reply, whatever it sends after the handshake."""
    with contextlib.suppress(OSError):  # the server may have closed already
        sock.sendall(then_send)
    assert closed_by_server(sock)
    sock.close()


def assert_served(sock, payloads) -> None:
    assert lockstep(sock, payloads) == [expected_reply(p) for p in payloads]


def sink_has_frames(sink, client_id, payloads) -> bool:
    """The sink got exactly these frames of the client, in order (waiting a moment: the server
    replies before it hands a batch to the sink)."""
    expected = [P.parse_payload(p).frame for p in payloads]
    return wait_for(lambda: [int(r[0]) for r in sink.frames.get(client_id, [])] == expected)


# --- allowlist --------------------------------------------------------------------------------


@pytest.mark.parametrize(("allow", "other_admitted"), [("127.0.0.1/32", False),
                                                       ("127.0.0.0/8", True),
                                                       ("10.0.0.0/8, 127.0.0.1, 127.0.0.2", True)])
def test_allowlist_admits_listed_networks_only(allow, other_admitted):
    with serving(allow=allow) as (srv, sink):
        local = open_client(srv)
        assert_served(local, FRAMES[:3])
        other = open_client(srv, source=OTHER_HOST)
        if other_admitted:
            assert_served(other, FRAMES[3:6])
            assert sink_has_frames(sink, 1, FRAMES[3:6])
            other.close()
        else:
            assert_refused(other, then_send=wire(FRAMES[3:6]))
            assert srv.stats.drops == {"address not allowed": 1}
            assert srv.stats.clients_total == 1, "the refused one never became a client"
            assert list(sink.frames) == [0] and sink.disconnects == []
        assert_served(local, FRAMES[6:8])  # the admitted client is unaffected either way
        assert sink_has_frames(sink, 0, FRAMES[:3] + FRAMES[6:8])
        local.close()


def test_allowlist_is_validated_naming_the_bad_entry():
    assert load_config(None, ["server.allow=10.0.0.0/8,192.168.1.7"]).server.allowed_networks(
    ) == ServerConfig(allow="10.0.0.0/8, 192.168.1.7/32").allowed_networks()
    assert ServerConfig().allow == "127.0.0.0/8,::1", "loopback only unless the user says"
    for bad, named in [("10.0.0.0/8,10.0.0.300", "'10.0.0.300'"), ("lan", "'lan'"),
                       ("10.0.0.0/33", "'10.0.0.0/33'"), ("10.0.0.0/8,", "empty entry"),
                       (" ", "is empty")]:
        with pytest.raises(ConfigError, match=f"server.allow.*{named}"):
            load_config(None, [f"server.allow={bad}"])


# --- token ------------------------------------------------------------------------------------


def test_token_right_one_served_others_refused_and_never_reach_replay():
    with serving(token=TOKEN) as (srv, sink):
        good = open_client(srv, P.client_handshake(TOKEN))
        assert_served(good, FRAMES[:3])
        refused = {
            "wrong token": P.client_handshake(TOKEN + "x"),
            "token required": P.client_handshake(),  # a reference client
            "bad handshake": P.encode_handshake(P.TOKEN_HANDSHAKE) + b"\x00\x00",  # empty token
        }
        for category, handshake in refused.items():
            # Frames in the same write as the handshake must not be served either.
            assert_refused(open_client(srv, handshake), then_send=wire(FRAMES[3:6]))
            assert wait_for(lambda c=category: srv.stats.drops[c] == 1), dict(srv.stats.drops)
        assert_served(good, FRAMES[6:8])
        assert srv.stats.frames == 5
        assert sink_has_frames(sink, 0, FRAMES[:3] + FRAMES[6:8])
        assert list(sink.frames) == [0] and sink.disconnects == []
        good.close()
        assert wait_for(lambda: sink.disconnects == [0])
        assert sum(srv.stats.drops.values()) == 3


def test_token_handshake_split_anywhere_and_followed_by_frames_in_one_write():
    with serving(token=TOKEN) as (srv, _sink):
        sock = open_client(srv, handshake=None)
        data = P.client_handshake(TOKEN) + wire(FRAMES[:1])
        for i in range(0, len(data), 3):
            sock.sendall(data[i:i + 3])
        assert recv_exact(sock, P.REPLY_SIZE) == expected_reply(FRAMES[0])
        sock.close()


def test_token_from_the_environment_and_our_clients_send_it(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with serving() as (srv, _sink):
        pool = ClientPool(srv.address, 2)  # reads $TEMPEST_TOKEN, as main.lua does
        try:
            assert pool.exchange(wire([p]) for p in FRAMES[:2]) == [expected_reply(p)
                                                                     for p in FRAMES[:2]]
        finally:
            pool.close()
        assert_refused(open_client(srv, P.client_handshake()))
        assert srv.stats.drops == {"token required": 1}


def test_without_a_token_reference_and_token_clients_are_both_served():
    with serving() as (srv, _sink):
        reference = open_client(srv, b"\x00\x00")
        assert_served(reference, FRAMES[:2])
        with_token = open_client(srv, P.client_handshake(TOKEN))
        assert_served(with_token, FRAMES[2:4])
        assert_refused(open_client(srv, P.encode_handshake(7)))
        assert srv.stats.drops == {"bad handshake": 1}
        reference.close()
        with_token.close()


def test_token_too_long_for_the_handshake_is_a_config_error():
    with pytest.raises(ConfigError, match="at most 256"):
        GameServer(ServerConfig(port=0, token="t" * 257), expert_policy)


def test_mame_command_passes_the_config_token_to_lua(tmp_path):
    mame = fake_mame(tmp_path, 'echo "$TEMPEST_TOKEN" > token\n')
    state = tmp_path / "state"
    assert main(["mame", "--mame", str(mame), "--set", f"server.token={TOKEN}",
                 "--seconds", "5", "--state-dir", str(state)]) == 0
    assert (state / "instance_0" / "token").read_text().strip() == TOKEN


# --- timeouts ---------------------------------------------------------------------------------


def test_idle_and_half_open_clients_time_out_active_ones_stay():
    with serving(idle_timeout_s=0.3, handshake_timeout_s=0.3) as (srv, sink):
        active = open_client(srv)
        idle = open_client(srv)
        assert_served(idle, FRAMES[:1])  # then silent, as a vanished host would be
        silent = open_client(srv, handshake=None)  # never sends the handshake
        dribbler = open_client(srv, handshake=None)
        handshake = P.client_handshake(TOKEN)
        start = time.monotonic()
        for i in range(len(handshake) - 1):  # one byte every 50 ms buys no extra time
            with contextlib.suppress(OSError):
                dribbler.sendall(handshake[i:i + 1])
            if i % 4 == 0:
                assert_served(active, FRAMES[i:i + 1])
            time.sleep(0.05)
            if time.monotonic() - start > 1.2:
                break
        assert wait_for(lambda: srv.stats.clients_connected == 1)
        assert srv.stats.drops == {"idle timeout": 1,
                                   "stalled before completing the handshake": 2}
        for sock in (idle, silent, dribbler):
            assert closed_by_server(sock)
            sock.close()
        assert_served(active, FRAMES[:2])
        assert sink.disconnects == [1], "the idle client had frames; the others never joined"
        active.close()


# --- connection flood -------------------------------------------------------------------------


def test_connection_flood_beyond_the_limit_is_refused_while_clients_keep_playing():
    max_clients, healthy, waves, per_wave = 8, 4, 10, 20
    with serving(max_clients=max_clients) as (srv, sink):
        players = [open_client(srv) for _ in range(healthy)]
        assert wait_for(lambda: srv.stats.clients_connected == healthy)
        flooding = threading.Event()
        flooding.set()
        results: list[list] = [[] for _ in range(healthy)]

        def play(k):
            sock, i = players[k], 0
            while flooding.is_set() or i < 20:
                payload = FRAMES[(k * 16 + i) % len(FRAMES)]
                sent_at = time.perf_counter()
                sock.sendall(wire([payload]))
                reply = recv_exact(sock, P.REPLY_SIZE)
                results[k].append((payload, reply, time.perf_counter() - sent_at))
                i += 1
                time.sleep(0.001)  # a game's pace, leaving the flood its share of the cores

        def accounted() -> int:
            """Connections the server has dealt with: admitted or refused at the limit."""
            return srv.stats.clients_total + srv.stats.drops["client limit"]

        threads = [threading.Thread(target=play, args=(k,)) for k in range(healthy)]
        for t in threads:
            t.start()
        peak = 0
        try:
            for wave in range(waves):
                # Each wave: 20 connections at once (half with a handshake) held until the
                # server has accounted for every one, then all closed together.
                before = accounted()
                flood = [open_client(srv, P.client_handshake() if j % 2 else None)
                         for j in range(per_wave)]
                assert wait_for(lambda before=before: accounted() - before == per_wave)
                peak = max(peak, srv.stats.clients_connected)
                for sock in flood:
                    sock.close()
                assert wait_for(lambda: srv.stats.clients_connected == healthy), wave
            # Then as fast as connections open and close, none held: each is still either
            # admitted (and gone at once) or refused, and the limit holds throughout.
            before = accounted()
            for j in range(RAPID_CONNECTIONS):
                open_client(srv, P.client_handshake() if j % 2 else None).close()
                peak = max(peak, srv.stats.clients_connected)
            assert wait_for(lambda: accounted() - before == RAPID_CONNECTIONS)
            assert wait_for(lambda: srv.stats.clients_connected == healthy)
        finally:
            flooding.clear()
            for t in threads:
                t.join(20)
        assert peak == max_clients
        rapid_admitted = srv.stats.clients_total - healthy - waves * (max_clients - healthy)
        assert srv.stats.drops["client limit"] == (waves * (per_wave - (max_clients - healthy))
                                                   + RAPID_CONNECTIONS - rapid_admitted)
        assert set(srv.stats.drops) == {"client limit"}, dict(srv.stats.drops)

        round_trips = []
        for k in range(healthy):
            payloads = [payload for payload, _, _ in results[k]]
            assert [reply for _, reply, _ in results[k]] == [expected_reply(p) for p in payloads]
            assert sink_has_frames(sink, k, payloads)
            round_trips += [rtt for _, _, rtt in results[k]]
        assert len(round_trips) >= healthy * 20
        assert max(round_trips) < 0.5, f"a healthy client waited {max(round_trips):.3f} s"
        print(f"{srv.stats.drops['client limit']} refused; healthy round trips during the "
              f"flood: {len(round_trips)}, p50 "
              f"{np.percentile(round_trips, 50) * 1e3:.2f} ms, p99 "
              f"{np.percentile(round_trips, 99) * 1e3:.2f} ms, max "
              f"{max(round_trips) * 1e3:.2f} ms")
        newcomer = open_client(srv)
        assert_served(newcomer, FRAMES[:2])
        for sock in [*players, newcomer]:
            sock.close()
