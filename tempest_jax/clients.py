"""Game clients over TCP, as MAME runs them: handshake, then one frame and one 5-byte reply at
a time (lockstep). Used by the sim clients, the server benchmark and the tests.

`ClientPool.exchange` sends one frame per client and waits for every reply (the sim clients
step all their games together). `run_lockstep` lets each client go at its own pace, sending its
next frame the moment its reply arrives, and measures the round trips (the server benchmark).
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Sequence

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.config import TOKEN_ENV


def connect_clients(address: tuple[str, int], count: int, timeout: float = 10.0,
                    token: str | None = None) -> list[socket.socket]:
    """`count` connections that have sent the handshake, with `token` when one is given (None:
    $TEMPEST_TOKEN, as the Lua client reads it)."""
    handshake = P.client_handshake(os.environ.get(TOKEN_ENV, "") if token is None else token)
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(handshake)
        socks.append(sock)
    return socks


class ClientPool:
    """`count` connected clients answered together."""

    def __init__(self, address: tuple[str, int], count: int, timeout: float = 10.0,
                 token: str | None = None):
        self.timeout = timeout
        self.socks = connect_clients(address, count, timeout, token)
        self._selector = selectors.DefaultSelector()
        for i, sock in enumerate(self.socks):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, i)

    def exchange(self, frames: Sequence[bytes]) -> list[bytes]:
        """Send frame i (821 wire bytes) on client i; return every client's 5-byte reply."""
        replies = [b""] * len(self.socks)
        for sock, frame in zip(self.socks, frames):
            sock.sendall(frame)
        waiting = len(self.socks)
        deadline = time.monotonic() + self.timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{waiting} replies missing after {self.timeout} s")
            for key, _ in self._selector.select(left):
                i = key.data
                chunk = self.socks[i].recv(P.REPLY_SIZE - len(replies[i]))
                if not chunk:
                    raise ConnectionError(f"server closed client {i}")
                replies[i] += chunk
                if len(replies[i]) == P.REPLY_SIZE:
                    waiting -= 1
        return replies

    def close(self) -> None:
        self._selector.close()
        for sock in self.socks:
            sock.close()


def _drain(socks, selector, pending, timeout: float = 5.0) -> None:
    """Read the reply every client still waits for, so closing never resets a connection with
    a reply in flight (the server would log that as a client that vanished)."""
    waiting = len(socks)
    deadline = time.monotonic() + timeout
    while waiting and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            i = key.data
            chunk = socks[i].recv(P.REPLY_SIZE - len(pending[i]))
            pending[i] += chunk
            if not chunk or len(pending[i]) == P.REPLY_SIZE:
                selector.unregister(socks[i])
                waiting -= 1


def run_lockstep(address: tuple[str, int], frames: Sequence[bytes], clients: int,
                 seconds: float, warmup_s: float = 0.5) -> dict:
    """Each client replays `frames` (wire bytes, cycling, from its own offset) in lockstep for
    `seconds` after a warm-up. Returns frames answered and round-trip percentiles."""
    socks = connect_clients(address, clients)
    selector = selectors.DefaultSelector()
    position = [(i * 7919) % len(frames) for i in range(clients)]
    pending = [b""] * clients
    sent_at = [0.0] * clients
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    latencies: list[float] = []
    answered = 0

    def send(i: int) -> None:
        sent_at[i] = time.perf_counter()
        socks[i].sendall(frames[position[i]])
        position[i] = (position[i] + 1) % len(frames)

    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + seconds
    for i in range(clients):
        send(i)
    try:
        while (now := time.perf_counter()) < end:
            for key, _ in selector.select(end - now):
                i = key.data
                chunk = socks[i].recv(P.REPLY_SIZE - len(pending[i]))
                if not chunk:
                    raise ConnectionError(f"server closed client {i}")
                pending[i] += chunk
                if len(pending[i]) < P.REPLY_SIZE:
                    continue
                pending[i] = b""
                done = time.perf_counter()
                if done >= measure_from:
                    latencies.append(done - sent_at[i])
                    answered += 1
                send(i)
        _drain(socks, selector, pending)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    lat_ms = np.asarray(latencies) * 1000.0
    return {"frames": answered, "seconds": seconds, "frames_per_s": answered / seconds,
            "latency_ms_p50": float(np.percentile(lat_ms, 50)) if answered else 0.0,
            "latency_ms_p99": float(np.percentile(lat_ms, 99)) if answered else 0.0}
