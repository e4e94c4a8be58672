"""The live dashboard: one self-contained page and a small JSON API, served by the training process.

    GET  /                    the page (dashboard.html: inline CSS and JS, no external assets)
    GET  /api/now             the latest metrics record, with the live operator settings and
                              the health of the run's threads
    GET  /api/history?since=T the records written after unix time T (all without `since`)
    GET  /api/settings        {"settings": ..., "writable": bool}
    GET  /api/frame?game=N    the latest frame of game (or client) N, described for the page's
                              game view (`gameview.GameView.answer`); without `game`: the
                              games there are
    POST /api/settings        change settings (JSON object); needs the token

The server is the standard library's `ThreadingHTTPServer` on a daemon thread. It binds
`dashboard.host` (loopback by default); a port in use moves it to the next free one. It is
read-only unless `dashboard.token` is set: a POST then needs `Authorization: Bearer TOKEN` (or
`X-Token: TOKEN`). Custom headers also make a cross-site browser request need a CORS preflight,
which this server never grants.
"""

from __future__ import annotations

import errno
import hmac
import importlib.resources
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tempest_jax.config import DashboardConfig
from tempest_jax.control import Controls
from tempest_jax.supervisor import Supervisor, Watch

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10_000
PORT_ATTEMPTS = 10
MAX_BODY_BYTES = 64 * 1024


class MetricsHistory:
    """The records of the run, bounded: when full, every other record of the older half is
    dropped, so the whole run stays visible at a coarser resolution the further back it is."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        if limit < 4:
            raise ValueError(f"history limit must be at least 4, got {limit}")
        self.limit = limit
        self._records: list[dict] = []
        self._lock = threading.Lock()

    def add(self, record: dict) -> None:
        with self._lock:
            self._records.append(record)
            if len(self._records) > self.limit:
                half = len(self._records) // 2
                self._records = self._records[:half:2] + self._records[half:]

    def latest(self) -> dict:
        with self._lock:
            return self._records[-1] if self._records else {}

    def since(self, after: float | None) -> list[dict]:
        """Records whose `time` is after `after` (all records for None), oldest first."""
        with self._lock:
            records = list(self._records)
        if after is None:
            return records
        return [r for r in records if r.get("time", 0.0) > after]


def json_safe(value):
    """`value` with non-finite floats as null: browsers reject the NaN that `json` writes."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def page_html() -> bytes:
    return importlib.resources.files("tempest_jax").joinpath("dashboard.html").read_bytes()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    dashboard: Dashboard
    watch: Watch | None = None

    def service_actions(self) -> None:
        """Called every turn of `serve_forever` (at least every half second): its heartbeat."""
        if self.watch is not None:
            self.watch.beat()


def bind(host: str, port: int, attempts: int = PORT_ATTEMPTS) -> _HTTPServer:
    """An HTTP server on `host`:`port`, or on the next free port of `attempts` when it is in use
    (port 0: one the OS picks)."""
    candidates = [0] if port == 0 else list(range(port, min(port + attempts, 65536)))
    for candidate in candidates:
        try:
            return _HTTPServer((host, candidate), _Handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise OSError(e.errno, f"dashboard: cannot listen on {host}:{candidate}: "
                                       f"{e.strerror}") from None
            log.warning("dashboard: port %d on %s is in use, trying the next one",
                        candidate, host)
    raise OSError(errno.EADDRINUSE,
                  f"dashboard: ports {candidates[0]}..{candidates[-1]} on {host} are all in use "
                  "(set dashboard.port to a free port, or 0 for any)")


class Dashboard:
    """The dashboard server of one run. `add(record)` feeds it; `close()` stops it.

    `control_state()` gives the live operator settings (merged into /api/now, so a change shows
    before the next record); `apply_settings(dict)` applies a POST's settings and returns the new
    state, raising ValueError (→ 400) for a bad value. `game_view(game or None)` answers
    /api/frame, raising KeyError (→ 404) for a game there is not.
    """

    def __init__(self, cfg: DashboardConfig, control_state: Callable[[], dict] = dict,
                 apply_settings: Callable[[dict], dict] | None = None,
                 history_limit: int = HISTORY_LIMIT, supervisor: Supervisor | None = None,
                 game_view: Callable[[int | None], dict] | None = None):
        self.token = cfg.resolved_token()
        self.control_state = control_state
        self.apply_settings = apply_settings
        self.game_view = game_view
        self.history = MetricsHistory(history_limit)
        self.page = page_html()
        self._server = bind(cfg.host, cfg.port)
        self._server.dashboard = self
        host, port = self._server.server_address[:2]
        self.address = (host, port)
        self.url = f"http://{host}:{port}/"
        self.supervisor = supervisor or Supervisor()
        self._server.watch = self.supervisor.watch("dashboard")
        self._server.watch.start(self._server.serve_forever)
        mode = "settings need the token" if self.writable else "read-only (no dashboard.token)"
        log.info("dashboard: %s (%s)", self.url, mode)

    @property
    def writable(self) -> bool:
        return bool(self.token) and self.apply_settings is not None

    def add(self, record: dict) -> None:
        self.history.add(record)

    def now(self) -> dict:
        """The latest record with the live operator settings and the run's thread health."""
        return {**self.history.latest(), **self.control_state(),
                "threads": self.supervisor.health()}

    def authorised(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        given = auth[len("Bearer "):] if auth.startswith("Bearer ") else headers.get("X-Token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.watch.join(timeout=5)


def start_dashboard(cfg: DashboardConfig, controls: Controls, supervisor: Supervisor,
                    game_view: Callable[[int | None], dict] | None = None) -> Dashboard | None:
    """The run's dashboard on `controls`, or None (logged) when it cannot listen: training
    goes on without it."""
    try:
        return Dashboard(cfg, controls.state, controls.apply_settings, supervisor=supervisor,
                         game_view=game_view)
    except OSError as e:
        log.error("%s; training goes on without the dashboard", e)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        log.debug("dashboard %s: " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload) -> None:
        body = json.dumps(json_safe(payload), separators=(",", ":"), default=float).encode()
        self._send(status, body, "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self):
        dashboard = self.server.dashboard
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, dashboard.page, "text/html; charset=utf-8")
        elif url.path == "/api/now":
            self._json(HTTPStatus.OK, dashboard.now())
        elif url.path == "/api/history":
            since = parse_qs(url.query).get("since", [None])[0]
            try:
                after = None if since in (None, "") else float(since)
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, f"since must be a unix time, got {since!r}")
                return
            self._json(HTTPStatus.OK, {"now": time.time(),
                                       "history": dashboard.history.since(after)})
        elif url.path == "/api/settings":
            self._json(HTTPStatus.OK, {"settings": dashboard.control_state(),
                                       "writable": dashboard.writable})
        elif url.path == "/api/frame":
            self._frame(dashboard, parse_qs(url.query).get("game", [""])[0])
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _frame(self, dashboard: Dashboard, game: str) -> None:
        if dashboard.game_view is None:
            self._error(HTTPStatus.NOT_FOUND, "this run has no game view")
            return
        try:
            number = None if game == "" else int(game)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"game must be a whole number, got {game!r}")
            return
        try:
            self._json(HTTPStatus.OK, dashboard.game_view(number))
        except KeyError as e:
            self._error(HTTPStatus.NOT_FOUND, e.args[0])

    def do_POST(self):
        dashboard = self.server.dashboard
        if urlsplit(self.path).path != "/api/settings":
            self.close_connection = True  # its body is not read
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST,
                        f"Content-Length must be 0..{MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if not dashboard.writable:
            self._error(HTTPStatus.FORBIDDEN,
                        "the dashboard is read-only: start the run with dashboard.token set")
            return
        if not dashboard.authorised(self.headers):
            self._error(HTTPStatus.FORBIDDEN, "a valid token is required "
                                              "(Authorization: Bearer TOKEN or X-Token)")
            return
        try:
            settings = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {e}")
            return
        if not isinstance(settings, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object of settings")
            return
        try:
            state = dashboard.apply_settings(settings)
        except ValueError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        log.info("dashboard: settings changed from %s: %s", self.client_address[0],
                 json.dumps(settings))
        self._json(HTTPStatus.OK, {"settings": state})
