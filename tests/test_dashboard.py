"""The dashboard: its HTTP layer and settings checks on their own (fast), then a real training
process whose page headless Chromium loads (live charts, no script errors, a screenshot), and
its game view: /api/frame's answer, then two screenshots of the panel some ticks apart, each
showing the tube and the player, and different."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from run_harness import TrainProcess, smoke_args

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.config import load_config
from tempest_jax.control import Controls
from tempest_jax.dashboard import Dashboard, MetricsHistory, page_html

TOKEN = "test-token-123"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def request(url: str, body: dict | bytes | None = None, headers: dict | None = None
            ) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# -- the HTTP layer without a trainer ---------------------------------------------------------

class FakeSettings:
    def __init__(self):
        self.settings = {"epsilon_override": None}

    def state(self) -> dict:
        return dict(self.settings)

    def apply(self, settings: dict) -> dict:
        if settings.get("epsilon") == "bad":
            raise ValueError("epsilon must be a number")
        self.settings["epsilon_override"] = settings.get("epsilon")
        return self.state()


def dashboard_cfg(**changes):
    overrides = [f"dashboard.{k}={v}" for k, v in {"port": 0, **changes}.items()]
    return load_config("smoke", overrides).dashboard


@pytest.fixture
def served():
    fake = FakeSettings()
    dashboard = Dashboard(dashboard_cfg(token=TOKEN), fake.state, fake.apply)
    yield dashboard, fake
    dashboard.close()


def test_settings_need_the_token(served):
    dashboard, fake = served
    url = dashboard.url + "api/settings"
    assert request(url, {"epsilon": 0.5})[0] == 403
    assert request(url, {"epsilon": 0.5}, bearer("wrong"))[0] == 403
    assert fake.settings["epsilon_override"] is None
    status, answer = request(url, {"epsilon": 0.5}, bearer())
    assert (status, answer["settings"]["epsilon_override"]) == (200, 0.5)
    assert request(url, {"epsilon": 0.25}, {"X-Token": TOKEN})[0] == 200
    assert request(dashboard.url + "api/now")[1]["epsilon_override"] == 0.25
    assert request(url)[1] == {"settings": {"epsilon_override": 0.25}, "writable": True}


def test_bad_settings_are_refused_with_a_message(served):
    dashboard, _ = served
    url = dashboard.url + "api/settings"
    status, answer = request(url, {"epsilon": "bad"}, bearer())
    assert (status, answer["error"]) == (400, "epsilon must be a number")
    assert request(url, b"{not json", bearer())[0] == 400
    assert request(url, b"[1, 2]", bearer())[0] == 400
    assert request(dashboard.url + "api/history?since=yesterday")[0] == 400
    assert request(dashboard.url + "api/nothing")[0] == 404


def test_without_a_token_the_dashboard_is_read_only():
    fake = FakeSettings()
    dashboard = Dashboard(dashboard_cfg(), fake.state, fake.apply)
    try:
        status, answer = request(dashboard.url + "api/settings", {"epsilon": 0.5}, bearer(""))
        assert status == 403 and "read-only" in answer["error"]
        assert request(dashboard.url + "api/settings")[1]["writable"] is False
        assert fake.settings["epsilon_override"] is None
    finally:
        dashboard.close()


def test_history_since_and_the_page(served):
    dashboard, _ = served
    dashboard.add({"time": 99.0, "frames": -1, "loss": float("nan")})
    assert request(dashboard.url + "api/now")[1]["loss"] is None  # strict JSON for browsers
    for t in range(5):
        dashboard.add({"time": 100.0 + t, "frames": t * 10})
    history = request(dashboard.url + "api/history?since=99.5")[1]["history"]
    assert [r["frames"] for r in history] == [0, 10, 20, 30, 40]
    since = request(dashboard.url + "api/history?since=102")[1]["history"]
    assert [r["frames"] for r in since] == [30, 40]
    assert request(dashboard.url + "api/now")[1]["frames"] == 40
    with urllib.request.urlopen(dashboard.url, timeout=10) as response:
        page = response.read().decode()
    assert "<canvas" in page and "/api/history" in page
    # Self-contained: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page)


def test_frame_endpoint_answers_the_game_view_or_says_why_not():
    def game_view(game):
        if game is None:
            return {"kind": "game", "games": [0, 1]}
        if game not in (0, 1):
            raise KeyError(f"no game {game}")
        return {"kind": "game", "games": [0, 1], "game": game, "frame": None}

    without = Dashboard(dashboard_cfg())
    dashboard = Dashboard(dashboard_cfg(), game_view=game_view)
    try:
        assert request(without.url + "api/frame?game=0")[0] == 404
        api = dashboard.url + "api/frame"
        assert request(api) == (200, {"kind": "game", "games": [0, 1]})
        assert request(api + "?game=1")[1]["game"] == 1
        assert request(api + "?game=7") == (404, {"error": "no game 7"})
        assert request(api + "?game=one")[0] == 400
    finally:
        without.close()
        dashboard.close()


def test_history_is_bounded_and_keeps_the_whole_run():
    history = MetricsHistory(limit=100)
    for t in range(1000):
        history.add({"time": float(t)})
    records = history.since(None)
    assert len(records) <= 100
    times = [r["time"] for r in records]
    assert times == sorted(times) and times[0] < 100 and times[-1] == 999.0


def test_a_port_in_use_moves_to_the_next():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dashboard = Dashboard(dashboard_cfg(port=port))
        try:
            assert port < dashboard.address[1] < port + 10
            status, now = request(dashboard.url + "api/now")
            assert status == 200 and set(now) == {"threads"}
            assert now["threads"]["dashboard"]["state"] == "running"
        finally:
            dashboard.close()


def test_page_is_package_data():
    assert b"<!DOCTYPE html>" in page_html()


def test_settings_are_checked_before_any_is_applied():
    cfg = load_config("smoke")
    controls = Controls(cfg.schedule, cfg.learner.lr, frames=lambda: 0, sim=True, start_level=1)
    with pytest.raises(ValueError, match="start_level"):
        controls.apply_settings({"epsilon": 0.3, "start_level": 0})
    with pytest.raises(ValueError, match="unknown settings"):
        controls.apply_settings({"epsilon": 0.3, "gamma": 0.9})
    with pytest.raises(ValueError, match="lr_scale"):
        controls.apply_settings({"lr_scale": 1e6})
    with pytest.raises(ValueError, match="training"):
        controls.apply_settings({"training": "yes"})
    assert controls.state()["epsilon_override"] is None
    state = controls.apply_settings({"epsilon": 0.3, "expert_ratio": 0, "start_level": 7,
                                     "pulse": True, "training": True})
    assert state["epsilon_override"] == 0.3 and state["expert_ratio_override"] == 0.0
    assert state["start_level"] == 7 and state["pulse"] and state["training"]
    assert controls.apply_settings({"epsilon": None})["epsilon_override"] is None


# -- a real training process and a real browser -----------------------------------------------

def chromium(url: str, *flags: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *flags, url],
        capture_output=True, text=True, timeout=600)  # a hang guard, not a speed limit


class FrameKeeper:
    """Asks for one game's frame every half second on a thread, so the game stays watched and
    its latest frame is there whenever Chromium asks: under --virtual-time-budget the page's
    timers run ahead of real time, and its first polls could all come before the source has
    copied a frame."""

    def __init__(self, url: str):
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                request(self.url)
            self._stop.wait(0.5)

    def __enter__(self) -> FrameKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def body_data(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body, f"no page body in Chromium's DOM:\n{dom[:2000]}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body[1]))


def game_frame(api: str, game: int) -> dict | None:
    status, answer = request(f"{api}?game={game}")
    assert status == 200 and answer["game"] == game, answer
    return answer["frame"]


def check_frame_answer(train: TrainProcess, api: str, games: int) -> dict:
    """/api/frame of a simulator run: the games, then game 2's frame once the source has
    copied it, every part of it the page needs present."""
    assert request(api)[1] == {"kind": "game", "count": games, "games": list(range(games))}
    frame = train.wait_until(lambda: game_frame(api, 2), "a frame of game 2")
    assert len(frame["state"]) == F.STATE_SIZE and set(frame["header"]) == set(
        P.HEADER_FIELDS[1:])
    assert 0 <= frame["action"]["joint"] < F.NUM_ACTIONS and frame["age_s"] >= 0
    assert len(frame["q_values"]) == len(frame["action_labels"]) == F.NUM_ACTIONS
    assert frame["picture"]["lines"] and frame["expert"]["label"] in frame["action_labels"]
    return frame


def panel_pixels(shot: Path, rect: str) -> np.ndarray:
    """The game view's canvas in a screenshot, RGB."""
    x, y, w, h = map(int, rect.split(","))
    return np.asarray(Image.open(shot).convert("RGB"))[y:y + h, x:x + w].astype(int)


@pytest.mark.timeout(600)
def test_live_dashboard_in_headless_chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; scripts/setup.sh "
                    "--test installs it)")
    run_dir = tmp_path / "dash"
    with TrainProcess(smoke_args(run_dir, "dashboard.enabled=true", "dashboard.port=0",
                                 f"dashboard.token={TOKEN}", "run.log_interval_s=0.5")) as train:
        url = train.wait_for(r"dashboard: (http://127\.0\.0\.1:\d+/)")[1]
        train.wait_until(lambda: len(request(url + "api/history")[1]["history"]) >= 3
                         and "episode_length" in request(url + "api/now")[1],
                         "three metrics records and a finished episode")
        threads = request(url + "api/now")[1]["threads"]
        assert {name: t["state"] for name, t in threads.items()} == {
            "dashboard": "running", "learner": "running", "replay-prefetch": "running"}

        settings = url + "api/settings"
        assert request(settings, {"epsilon": 0.42})[0] == 403
        assert request(settings, {"epsilon": 0.42}, bearer("wrong"))[0] == 403
        assert request(settings, {"epsilon": 1.5}, bearer())[0] == 400
        status, answer = request(settings, {"epsilon": 0.42, "start_level": 2}, bearer())
        assert status == 200 and answer["settings"]["start_level"] == 2
        # The next record (the simulator stepped with the new start level) shows the override.
        train.wait_until(lambda: request(url + "api/now")[1].get("epsilon") == 0.42,
                         "the ε override in /api/now")

        with tempfile.TemporaryDirectory() as profile:
            dom = chromium(url, "--virtual-time-budget=4000", "--dump-dom",
                           profile=Path(profile)).stdout
        body = re.search(r"<body([^>]*)>", dom)
        assert body, f"no page body in Chromium's DOM:\n{dom[:2000]}"
        status = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body[1]))
        assert int(status["points"]) >= 3, status
        assert int(status["drawn"]) >= 10, status  # series with data across the charts
        assert int(status["polls"]) >= 1, status
        assert status["errors"] == "0" and status["fetch-errors"] == "0", status
        assert re.search(r'<span class="thread running"[^>]*><i></i>learner running', dom)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            chromium(url, "--virtual-time-budget=4000", "--window-size=1400,1000",
                     "--hide-scrollbars", f"--screenshot={shot}", profile=Path(profile))
        assert shot.is_file() and shot.stat().st_size > 20_000
        print(f"dashboard screenshot: {shot}")

        # The game view, opened on game 2 by the page's address.
        api, page = url + "api/frame", url + "?game=2"
        tick = check_frame_answer(train, api, games=8)["header"]["frame"]
        with FrameKeeper(api + "?game=2"):
            with tempfile.TemporaryDirectory() as profile:
                dom = chromium(page, "--virtual-time-budget=4000", "--window-size=1400,1000",
                               "--dump-dom", profile=Path(profile)).stdout
            status = body_data(dom)
            assert int(status["game-drawn"]) >= 3, status
            assert status["errors"] == "0" and status["game-fetch-errors"] == "0", status
            shots = []
            for i in (1, 2):
                # Each picture shows a later tick of the game than the one before.
                train.wait_until(lambda seen=tick: game_frame(api, 2)["header"]["frame"] != seen,
                                 "the game's next frame")
                tick = game_frame(api, 2)["header"]["frame"]
                shots.append(ARTIFACTS / f"dashboard-game-{i}.png")
                shots[-1].unlink(missing_ok=True)
                with tempfile.TemporaryDirectory() as profile:
                    chromium(page, "--virtual-time-budget=4000", "--window-size=1400,1000",
                             "--hide-scrollbars", f"--screenshot={shots[-1]}",
                             profile=Path(profile))
        first, second = (panel_pixels(shot, status["game-rect"]) for shot in shots)
        for pixels in (first, second):
            r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
            assert ((b > 150) & (r < 90) & (g < 90)).sum() > 500, "no blue tube"
            assert ((r > 200) & (g > 200) & (b < 90)).sum() > 30, "no yellow player"
        assert (np.abs(first - second).sum(axis=-1) > 60).sum() > 50, "the picture did not change"
        print(f"game view screenshots: {shots[0]}, {shots[1]}")

        train.signal(signal.SIGTERM)
        assert train.wait() == 0
