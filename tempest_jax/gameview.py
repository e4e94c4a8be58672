"""The live game view: the latest frame of each game someone watches, and what the dashboard's
`/api/frame` answers about it.

The dashboard's HTTP threads ask for a game (`FrameWatch.latest`), which keeps that game
watched for WATCH_TTL_S; the source's own thread copies the frames of the watched games as it
plays (`FrameWatch.put`: the simulator before each rollout chunk, the game server for each
served batch). While nobody watches, a source pays one dictionary check per step.
`GameView.answer` adds what the page shows: the action taken, the expert's advice, the
network's 44 action values on the currently published parameters (one small forward pass,
compiled once) and the picture as a display list (`render.Renderer.strokes`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tempest_jax import features as F
from tempest_jax.actor import Inference, ParamStore
from tempest_jax.policy import PolicyOutput
from tempest_jax.protocol import HEADER_FIELDS, FrameBatch
from tempest_jax.render import Renderer, action_label

# A game stays watched this long after its last request (the page asks several times a second).
WATCH_TTL_S = 3.0
PICTURE_SIZE = 256
LISTED_GAMES = 256  # ids an answer lists (a simulator may run far more; any may be asked for)
ACTION_LABELS = [action_label(joint) for joint in range(F.NUM_ACTIONS)]


@dataclass(frozen=True)
class WatchedFrame:
    """One frame of one game (a simulator game or a served client) and the action chosen on
    it; `time` is the unix time it was copied."""

    game: int
    state: np.ndarray          # (195,) float32
    header: dict               # protocol header field -> int or float
    action: int                # the joint action chosen on this frame
    is_expert: bool            # ... executing the expert's advice
    time: float


def sim_frame(game: int, frame, action: int, is_expert: bool) -> WatchedFrame:
    """A WatchedFrame of one game's simulator frame (a `sim.Frame` of scalars on the host)."""
    return WatchedFrame(game, np.asarray(frame.state, np.float32),
                        {name: np.asarray(getattr(frame, name)).item()
                         for name in HEADER_FIELDS[1:]},
                        int(action), bool(is_expert), time.time())


def served_frame(client_id: int, batch: FrameBatch, row: int,
                 output: PolicyOutput) -> WatchedFrame:
    """A WatchedFrame of row `row` of a served batch."""
    return WatchedFrame(client_id, batch.state[row].copy(),
                        {name: batch.header[name][row].item() for name in HEADER_FIELDS[1:]},
                        int(output.joint[row]), bool(output.is_expert[row]), time.time())


class FrameWatch:
    """Which games are watched and their latest frames; every method may be called from any
    thread."""

    def __init__(self, ttl_s: float = WATCH_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._asked: dict[int, float] = {}
        self._frames: dict[int, WatchedFrame] = {}

    def latest(self, game: int) -> WatchedFrame | None:
        """The game's latest frame (None until its source has copied one); it stays watched
        for `ttl_s`."""
        with self._lock:
            self._asked[game] = self._clock()
            return self._frames.get(game)

    def watched(self) -> list[int]:
        """The games asked for within `ttl_s`; the others are dropped, with their frames."""
        if not self._asked:  # nobody watches: a source's step pays only this check
            return []
        now = self._clock()
        with self._lock:
            for game in [g for g, asked in self._asked.items() if now - asked > self.ttl_s]:
                del self._asked[game]
                self._frames.pop(game, None)
            return list(self._asked)

    def put(self, frame: WatchedFrame) -> None:
        with self._lock:
            self._frames[frame.game] = frame

    def forget(self, game: int) -> None:
        """A game that ended for good (a client that left) keeps no frame."""
        with self._lock:
            self._frames.pop(game, None)


class GameView:
    """/api/frame's answers. `games()` gives the ids of the games one may watch (a range for
    the simulator's games, a list of the connected clients); `kind` names them ("game",
    "client")."""

    def __init__(self, watch: FrameWatch, games: Callable[[], Sequence[int]], kind: str,
                 inference: Inference, params: ParamStore, size: int = PICTURE_SIZE):
        self.watch, self.games, self.kind = watch, games, kind
        self.inference, self.params = inference, params
        self.renderer = Renderer(size)
        # One forward pass of a fixed row count: it compiles once.
        self._rows = np.zeros((inference.row_multiple, inference.obs_size), np.float32)
        self._lock = threading.Lock()
        self._last: tuple[WatchedFrame, int, dict] | None = None

    def answer(self, game: int | None) -> dict:
        """{"kind", "count", "games"} (the first LISTED_GAMES ids) and, for a `game`, {"game",
        "frame"}: the frame described (None until the source has copied one). KeyError for a
        game that is not one of `games()`."""
        games = self.games()
        listed = list(games[:LISTED_GAMES])
        answer = {"kind": self.kind, "count": len(games), "games": listed}
        if game is None:
            return answer
        if game not in games:
            raise KeyError(f"no {self.kind} {game} (there are {len(games)}: "
                           f"{listed[:16] or 'none'}{' …' if len(games) > 16 else ''})")
        frame = self.watch.latest(game)
        if frame is None:
            return {**answer, "game": game, "frame": None}
        params, version = self.params.get()
        with self._lock:  # the renderer's geometry cache and the forward pass's buffer
            if self._last is not None and self._last[0] is frame and self._last[1] == version:
                described = self._last[2]
            else:
                described = self._describe(frame, params)
                self._last = (frame, version, described)
        return {**answer, "game": game,
                "frame": {**described, "age_s": max(time.time() - frame.time, 0.0)}}

    def q_values(self, params, state: np.ndarray) -> np.ndarray:
        """(44,) expected Q-values of one state vector."""
        self._rows[0] = state
        return np.asarray(self.inference.q_values(params, self._rows)[0], np.float64)

    def _describe(self, frame: WatchedFrame, params) -> dict:
        header = frame.header
        expert = int(F.expert_joint_action(
            np.asarray([header["expert_target"]]), np.asarray([header["player_seg"]]),
            np.asarray([header["is_open"] != 0]), np.asarray([header["expert_fire"]]),
            np.asarray([header["expert_zap"]]))[0])
        q = self.q_values(params, frame.state)
        label = f"{self.kind.upper()} {frame.game}"
        return {
            "time": frame.time, "state": frame.state.tolist(), "header": header,
            "action": {"joint": frame.action, "label": action_label(frame.action),
                       "is_expert": frame.is_expert},
            "expert": {"joint": expert, "label": action_label(expert),
                       "target": header["expert_target"], "fire": header["expert_fire"],
                       "zap": header["expert_zap"]},
            "q_values": q.tolist(), "action_labels": ACTION_LABELS,
            "picture": self.renderer.strokes(frame.state, header, action=frame.action,
                                             q_values=q, label=label),
        }
