"""The game server: one `selectors` event loop serving every MAME or sim client.

Per client it buffers bytes until whole frames are present (partial reads are never a
disconnect), then batches the ready frames of all clients (first-ready, with a small wait budget
for the others), decodes them in one numpy pass, asks the policy for actions in one call,
answers each frame with its 5-byte reply and hands the decoded frames to a sink (the replay
sink). A policy that computes asynchronously (`AsyncPolicy`, e.g. jitted inference) is started
first; the previous batch goes to the sink while it runs, so forming transitions costs the
clients no latency. Every frame is validated completely (length, value count, header ranges,
finite values) as it arrives, while it is still one client's: only whole, valid payloads enter a
batch, so nothing a client sends can make the batched path raise. A client that sends anything
malformed, stalls mid-frame, goes silent or vanishes is logged with its id (and the offending
field) and dropped; no other client is touched.

Access control: a connection from outside server.allow, or beyond server.max_clients, is closed
as soon as it is accepted; with a token configured (server.token or $TEMPEST_TOKEN) a client must
send it in the handshake (protocol.TOKEN_HANDSHAKE) before anything of it is served. Refusals
are counted in `stats.drops` by reason and logged at most once per few seconds per reason, so a
connection flood can neither flood the log nor starve the clients being served.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.config import TOKEN_ENV, ConfigError, ServerConfig
from tempest_jax.features import JOINT_FIRE, JOINT_SPINNER, JOINT_ZAP
from tempest_jax.metrics import PeakWindow
from tempest_jax.policy import AsyncPolicy, FrameSink, Policy, PolicyOutput

log = logging.getLogger(__name__)

RECV_BYTES = 1 << 16
SOCKET_BUFFER_BYTES = 1 << 16
LATENCY_WINDOW = 20_000
ACCEPTS_PER_TURN = 16  # connections taken per loop turn; the rest wait in the listen backlog
REFUSAL_LOG_INTERVAL_S = 5.0
# MAME sends one frame and waits for its reply. A client this far ahead of its replies, or
# this far behind in reading them, breaks the protocol; dropping it bounds the memory it costs.
MAX_QUEUED_FRAMES = 64
MAX_UNREAD_REPLY_BYTES = 1 << 16


@dataclasses.dataclass
class StartSettings:
    """Reply bytes 3 and 4; mutable at run time (dashboard), read once per batch."""

    start_advanced: int
    start_level_min: int


class _Client:
    __slots__ = ("address", "connected_at", "frames", "handshake", "handshaken", "id",
                 "last_byte_at", "outbox", "ready", "ready_at", "replied_at", "sock", "splitter")

    def __init__(self, client_id: int, sock: socket.socket, address, now: float):
        self.id = client_id
        self.sock = sock
        self.address = address
        self.splitter = P.FrameSplitter()
        self.handshake = bytearray()
        self.handshaken = False
        self.ready: collections.deque[bytes] = collections.deque()
        self.ready_at: collections.deque[float] = collections.deque()
        self.outbox = bytearray()
        self.connected_at = now
        self.last_byte_at = now
        self.replied_at = now
        self.frames = 0


class _RateLimitedLog:
    """Warnings of one kind at most once per interval, with a count of those held back."""

    def __init__(self, clock: Callable[[], float], interval_s: float):
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: collections.Counter = collections.Counter()

    def warning(self, kind: str, message: str, *args) -> None:
        now = self._clock()
        if now - self._last.get(kind, -math.inf) < self._interval_s:
            self._held[kind] += 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        log.warning(message + (f" ({held} more like it since the last message)" if held else ""),
                    *args)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclasses.dataclass
class ServerStats:
    frames: int = 0
    batches: int = 0
    clients_connected: int = 0
    clients_total: int = 0
    drops: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latencies_ms: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    # Frames received whole and not yet answered (every client's queue), and their peak
    # since the previous snapshot.
    queued_frames: int = 0
    queued_peak_window: PeakWindow = dataclasses.field(default_factory=PeakWindow)

    def count_queued(self, change: int) -> None:
        self.queued_frames += change
        self.queued_peak_window.observe(self.queued_frames)

    def snapshot(self) -> dict:
        """The counters now; the queue peak starts a new window."""
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        return {"frames": self.frames, "batches": self.batches,
                "queued_frames": self.queued_frames,
                "queued_frames_peak": self.queued_peak_window.take(self.queued_frames),
                "clients": self.clients_connected, "clients_total": self.clients_total,
                "drops": sum(self.drops.values()), "drops_by_reason": dict(self.drops),
                "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else 0.0,
                "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else 0.0,
                "mean_batch": self.frames / self.batches if self.batches else 0.0}


class GameServer:
    """Serve clients until `stop()`; run `serve_forever()` in the thread that owns the loop."""

    def __init__(self, cfg: ServerConfig, policy: Policy, sink: FrameSink | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.cfg = cfg
        self.policy = policy
        # How a batch's actions are started: an AsyncPolicy's own start, else a deferred call.
        self._start_batch: Callable[[np.ndarray, P.FrameBatch], Callable[[], PolicyOutput]] = (
            policy.start if isinstance(policy, AsyncPolicy)
            else lambda ids, batch: functools.partial(policy, ids, batch))
        self.sink = sink
        self.settings = StartSettings(int(cfg.start_advanced), cfg.start_level_min)
        self.stats = ServerStats()
        self._clock = clock
        # The last answered batch, not yet in the sink, and the disconnects that must follow
        # it there (a client's last frame goes in before its disconnect).
        self._deferred: tuple[np.ndarray, P.FrameBatch, PolicyOutput] | None = None
        self._held_disconnects: list[int] = []
        self._allowed = cfg.allowed_networks()
        token = P.token_bytes(cfg.resolved_token())
        if len(token) > P.MAX_TOKEN_BYTES:
            raise ConfigError(f"the server token (server.token or ${TOKEN_ENV}) is {len(token)} "
                              f"bytes; the handshake carries at most {P.MAX_TOKEN_BYTES}")
        # Digests compared, so the comparison's time reveals neither the token nor its length.
        self._token_digest = hashlib.sha256(token).digest() if token else None
        self._refusals = _RateLimitedLog(clock, REFUSAL_LOG_INTERVAL_S)
        if all(net.is_loopback for net in self._allowed) and not _is_loopback(cfg.host):
            log.warning("server.host is %s but server.allow (%s) admits loopback clients only: "
                        "list the clients' networks with --allow (server.allow)", cfg.host,
                        cfg.allow)
        self._selector = selectors.DefaultSelector()
        self._clients: dict[int, _Client] = {}
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((cfg.host, cfg.port))
        except OSError as e:
            self._listener.close()
            raise OSError(e.errno, f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror} "
                          "(set server.port to another port, or 0 for any free one)") from None
        # Room for every client reconnecting at once (a full queue makes a new client wait
        # out 1 s SYN retries); the kernel bounds it.
        self._listener.listen(max(128, cfg.max_clients))
        self._listener.setblocking(False)
        log.info("game server on %s:%d accepts clients from %s, %s", *self.address, cfg.allow,
                 "with the token" if self._token_digest else "without a token")
        self._selector.register(self._listener, selectors.EVENT_READ, None)

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    def stop(self) -> None:
        self._stop.set()

    def client_ids(self) -> list[int]:
        """The clients being served (past the handshake); from any thread: the values are
        copied in one C call, which another thread's change cannot interleave."""
        return sorted(c.id for c in list(self._clients.values()) if c.handshaken)

    def serve_forever(self, heartbeat: Callable[[], None] = lambda: None) -> None:
        """Serve until `stop()`; `heartbeat` is called every turn of the loop (at least every
        50 ms while nothing blocks it)."""
        try:
            while not self._stop.is_set():
                heartbeat()
                self.poll(timeout=0.05)
        finally:
            self.close()

    def close(self) -> None:
        self._push_deferred()
        for client_id in list(self._clients):
            self._drop(client_id, "server shutdown", level=logging.DEBUG)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        self._selector.close()

    # --- one turn of the loop -----------------------------------------------------------------

    def poll(self, timeout: float) -> int:
        """Wait up to `timeout` for I/O, gather a batch, answer it. Returns frames answered."""
        if self._any_ready():
            self._pump(0.0)
        elif self._deferred is not None:
            # The last batch waits a moment for the next one, whose inference it would overlap;
            # if none comes (clients slower than the wait budget), it goes to the sink now.
            self._pump(min(timeout, self.cfg.batch_wait_ms / 1000.0))
            if not self._any_ready():
                self._push_deferred()
                self._pump(timeout)
        else:
            self._pump(timeout)
        if not self._any_ready():
            self._expire_timeouts()
            return 0
        # Wait budget: give lockstep clients that are about to send a moment to join the batch.
        deadline = self._clock() + self.cfg.batch_wait_ms / 1000.0
        while not self._batch_full() and (left := deadline - self._clock()) > 0:
            self._pump(left)
        answered = self._answer_batch()
        self._expire_timeouts()
        return answered

    def _pump(self, timeout: float) -> None:
        for key, events in self._selector.select(timeout):
            if key.data is None:
                self._accept()
                continue
            client = self._clients.get(key.data)
            if client is None:
                continue
            if events & selectors.EVENT_WRITE:
                self._flush(client)
            if events & selectors.EVENT_READ and client.id in self._clients:
                self._read(client)

    def _accept(self) -> None:
        # A bounded number per turn: under a connection flood the clients already being served
        # still get their turn; the listener stays readable and the rest follow on later turns.
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. out of file descriptors: the served clients carry on
                self.stats.drops["accept failed"] += 1
                self._refusals.warning("accept failed", "accept failed: %s", e)
                return
            refusal = self._refusal(address[0])
            if refusal is not None:
                category, detail = refusal
                self.stats.drops[category] += 1
                self._refusals.warning(category, "refused a connection from %s:%d: %s",
                                       *address[:2], detail)
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            client_id = next(i for i in range(len(self._clients) + 1) if i not in self._clients)
            self._clients[client_id] = _Client(client_id, sock, address, self._clock())
            self._selector.register(sock, selectors.EVENT_READ, client_id)
            self.stats.clients_connected = len(self._clients)
            self.stats.clients_total += 1
            log.info("client %d connected from %s:%d", client_id, *address[:2])

    def _refusal(self, host: str) -> tuple[str, str] | None:
        """(drop category, detail) when a connection from `host` must be closed at once."""
        if not any(ipaddress.ip_address(host) in net for net in self._allowed):
            return "address not allowed", f"not in server.allow ({self.cfg.allow})"
        if len(self._clients) >= self.cfg.max_clients:
            return "client limit", f"client limit {self.cfg.max_clients} reached"
        return None

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(client.id, "receive failed", str(e))
            return
        if not data:
            if client.splitter.pending:
                self._drop(client.id, "disconnected mid-frame",
                           f"{client.splitter.pending} bytes of a frame received")
            else:
                self._drop(client.id, "disconnected", level=logging.INFO)
            return
        now = self._clock()
        client.last_byte_at = now
        if not client.handshaken:
            data = self._handshake(client, data)
            if data is None:
                return
        try:
            payloads = client.splitter.feed(data)
        except P.ProtocolError as e:
            self._drop(client.id, "bad framing", str(e))
            return
        # Checked completely while they are this client's: a batch holds valid payloads only.
        for payload in payloads:
            try:
                P.validate_payload(payload)
            except P.ProtocolError as e:
                self._drop(client.id, "invalid frame", f"{e.field}: {e}")
                return
        client.ready.extend(payloads)
        client.ready_at.extend([now] * len(payloads))
        self.stats.count_queued(len(payloads))
        if len(client.ready) > MAX_QUEUED_FRAMES:
            self._drop(client.id, "sent too far ahead",
                       f"{len(client.ready)} frames waiting for replies (lockstep protocol; "
                       f"at most {MAX_QUEUED_FRAMES})")

    def _handshake(self, client: _Client, data: bytes) -> bytes | None:
        """Consume the handshake (plain, or carrying a token); return the bytes after it.
        None: not complete yet, or the client was refused. The buffer never outgrows one
        received chunk plus a token handshake."""
        buf = client.handshake
        buf += data
        try:
            handshake = P.read_handshake(buf)
        except P.HandshakeError as e:
            self._drop(client.id, "bad handshake", str(e), refused=True)
            return None
        if handshake is None:
            return None
        value, token, used = handshake
        rest = bytes(buf[used:])
        buf.clear()
        if self._token_digest is not None:
            if value == P.PLAIN_HANDSHAKE:
                self._drop(client.id, "token required", "plain handshake but this server "
                           f"requires a token (give the client ${TOKEN_ENV})", refused=True)
                return None
            if not hmac.compare_digest(hashlib.sha256(token).digest(), self._token_digest):
                self._drop(client.id, "wrong token", f"{len(token)}-byte token does not match",
                           refused=True)
                return None
        client.handshaken = True
        return rest

    def _any_ready(self) -> bool:
        return self.stats.queued_frames > 0

    def _batch_full(self) -> bool:
        ready = sum(1 for c in self._clients.values() if c.ready)
        return ready >= min(len(self._clients), self.cfg.max_batch)

    def _answer_batch(self) -> int:
        clients = [c for c in self._clients.values() if c.ready][: self.cfg.max_batch]
        if not clients:  # the clients whose frames were ready were dropped in the wait budget
            return 0
        payloads = [c.ready.popleft() for c in clients]
        received_at = [c.ready_at.popleft() for c in clients]
        self.stats.count_queued(-len(clients))
        batch = P.decode_valid_payloads(b"".join(payloads))  # each checked in _read
        ids = np.fromiter((c.id for c in clients), dtype=np.int64, count=len(clients))
        wait = self._start_batch(ids, batch)
        self._push_deferred()  # while an asynchronous policy computes
        output = wait()
        joint = np.where(batch.done != 0, 0, output.joint)  # no action on a terminal frame
        replies = P.encode_replies(JOINT_FIRE[joint], JOINT_ZAP[joint], JOINT_SPINNER[joint],
                                   self.settings.start_advanced, self.settings.start_level_min)
        self.stats.frames += len(clients)
        self.stats.batches += 1
        now = self._clock()
        # The batch goes to the sink later (see poll): the clients get their replies first. A
        # client that a failed send drops leaves the sink only after this batch is in.
        if self.sink is not None:
            self._deferred = (ids, batch, PolicyOutput(joint=joint, is_expert=output.is_expert))
        for i, client in enumerate(clients):
            client.frames += 1
            client.replied_at = now
            self.stats.latencies_ms.append((now - received_at[i]) * 1000.0)
            self._send(client, replies[P.REPLY_SIZE * i: P.REPLY_SIZE * (i + 1)])
        return len(clients)

    def _push_deferred(self) -> None:
        """The last answered batch to the sink, then the disconnects held behind it."""
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            self.sink.push(*deferred)
        held, self._held_disconnects = self._held_disconnects, []
        for client_id in held:
            self.sink.disconnect(client_id)

    def _send(self, client: _Client, data: bytes) -> None:
        if client.outbox:
            client.outbox += data
            if len(client.outbox) > MAX_UNREAD_REPLY_BYTES:
                self._drop(client.id, "not reading its replies",
                           f"{len(client.outbox)} reply bytes unsent")
            return
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._drop(client.id, "send failed", str(e))
            return
        if sent < len(data):
            client.outbox += data[sent:]
            self._selector.modify(client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                  client.id)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(client.id, "send failed", str(e))
            return
        del client.outbox[:sent]
        if not client.outbox:
            self._selector.modify(client.sock, selectors.EVENT_READ, client.id)

    def _expire_timeouts(self) -> None:
        """Drop clients that do not finish the handshake in time, stall mid-frame, or go silent
        (a dead or half-open peer holds a client slot otherwise)."""
        now = self._clock()
        cfg = self.cfg
        for client in list(self._clients.values()):
            if not client.handshaken:
                # Timed from the connection, not the last byte: dribbling bytes buys no time.
                if now - client.connected_at > cfg.handshake_timeout_s:
                    self._drop(client.id, "stalled before completing the handshake",
                               f"connected {now - client.connected_at:.1f} s ago", refused=True)
            elif client.splitter.pending:
                if now - client.last_byte_at > cfg.stall_timeout_s:
                    self._drop(client.id, "stalled mid-frame",
                               f"no bytes for {now - client.last_byte_at:.1f} s")
            elif cfg.idle_timeout_s and not client.ready:
                silent = now - max(client.last_byte_at, client.replied_at)
                if silent > cfg.idle_timeout_s:
                    self._drop(client.id, "idle timeout", f"nothing received for {silent:.1f} s "
                               f"(server.idle_timeout_s = {cfg.idle_timeout_s:g})")

    def _drop(self, client_id: int, category: str, detail: str = "",
              level: int = logging.WARNING, refused: bool = False) -> None:
        """Close one client. `category` counts in the drop statistics unless the client simply
        left (level below WARNING); `detail` goes to the log. A refused client (one never
        admitted past the handshake), or one dropped before any of its frames was answered, is
        logged rate-limited per category, as a flood would repeat it; a client that was being
        served is always logged."""
        client = self._clients.pop(client_id, None)
        if client is None:
            return
        self.stats.count_queued(-len(client.ready))
        if refused:
            self._refusals.warning(category, "client %d (%s:%d) refused: %s: %s", client_id,
                                   *client.address[:2], category, detail)
        elif client.frames == 0 and level >= logging.WARNING:
            self._refusals.warning(category, "client %d (%s:%d) dropped before its first "
                                   "reply: %s: %s", client_id, *client.address[:2], category,
                                   detail)
        else:
            log.log(level, "client %d (%s:%d) dropped after %d frames: %s%s", client_id,
                    *client.address[:2], client.frames, category,
                    f": {detail}" if detail else "")
        if level >= logging.WARNING:
            self.stats.drops[category] += 1
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()
        self.stats.clients_connected = len(self._clients)
        if self.sink is not None and client.handshaken:  # the sink never saw the others
            if self._deferred is not None:
                self._held_disconnects.append(client_id)
            else:
                self.sink.disconnect(client_id)
