"""Greedy evaluation of a checkpoint beside the expert and a random policy, and the periodic
evaluation of a training run.

On the simulator (`evaluate`) all three play the same games (same seed, so the same per-game
randomness) from a new game to its first game over. Served to game clients (`evaluate_served`:
MAME, or sim clients) the three take turns: each plays whole games (from the client's start of
a real game to its return to attract mode) until it has finished the requested number. The
network acts greedily (argmax of expected Q, no exploration, no expert). During training,
`PeriodicEvaluator` plays the network of the moment on the same seeded simulator games every
`run.eval_interval` updates and keeps the best-scoring checkpoint.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import learner as learner_lib
from tempest_jax.actor import Inference, greedy
from tempest_jax.checkpoint import Checkpointer, Restored
from tempest_jax.config import Config, ServerConfig
from tempest_jax.learning import Learning
from tempest_jax.policy import PolicyOutput
from tempest_jax.protocol import FrameBatch
from tempest_jax.render import Renderer
from tempest_jax.resume import BEST_DIR, restore_run
from tempest_jax.rundir import checkpoint_dir
from tempest_jax.server import GameServer
from tempest_jax.sim import play
from tempest_jax.supervisor import Supervisor
from tempest_jax.video import VideoRequest, write_video

log = logging.getLogger(__name__)
POLICY_ORDER = ("network", "expert", "random")


def network_q_values(learner: learner_lib.Learner):
    """(params, states (n, 195)) -> (n, 44) expected Q-values."""
    support = jnp.asarray(learner.support)

    def q_values(params, state):
        return learner_lib.expected_q(learner.network.apply(params, state), support)

    return q_values


def greedy_policy(learner: learner_lib.Learner):
    """The network's greedy actions on a batch of simulator frames, in float32."""
    support = jnp.asarray(learner.support)

    def policy(params, frame, key):
        return greedy(learner.network.apply, params, frame.state, support)

    return policy


def restore_checkpoint(path: str | Path, which: str = "latest"
                       ) -> tuple[learner_lib.Learner, Restored]:
    """The learner and a checkpoint of a run (or a checkpoints directory), with the config it
    was saved with. `which`: "latest" (the newest complete one), "best" (the periodic
    evaluation's best, in checkpoints/best/) or a step number. Torn checkpoints (a crash during
    a save) are skipped and reported, and left as they are: a training job may be writing
    beside the evaluation."""
    directory = checkpoint_dir(path)
    if which == BEST_DIR:
        directory = directory / BEST_DIR
        if not directory.is_dir():
            raise FileNotFoundError(f"{path} has no best checkpoint (checkpoints/{BEST_DIR}/): "
                                    "its periodic evaluation (run.eval_interval) has not run")
    elif which != "latest" and not which.isdigit():
        raise ValueError(f"checkpoint must be latest, best or a step number, got {which!r}")
    return restore_run(directory, int(which) if which.isdigit() else None)


def checkpoint_facts(path: str | Path, which: str, restored: Restored) -> dict:
    """Which checkpoint an evaluation plays: which one of the run, its update step, the run's
    frames then, and the checkpoint the run's network started from (train --init-from; "" for
    none)."""
    return {"checkpoint": str(path), "which": which, "step": restored.step,
            "frames": int(restored.counters.get("frames", 0)),
            "init_from": str(restored.counters.get("init_from", ""))}


class ProgressLine:
    """One policy's progress on stderr, written only when it changes: on a terminal one line
    rewritten in place; elsewhere (a log file) a line of its own each time the bar grows, so a
    log gets a few lines per policy rather than one per server turn."""

    WIDTH = 30

    def __init__(self, name: str, games: int, enabled: bool = True, stream=None):
        self.name, self.games, self.enabled = name, games, enabled
        self.stream = sys.stderr if stream is None else stream
        self.in_place = self.stream.isatty()
        self._text = self._bar = None

    def update(self, finished: int, detail: str) -> None:
        if not self.enabled:
            return
        done = min(finished, self.games)
        bar = "#" * (self.WIDTH * done // self.games)
        text = f"{self.name:>8} [{bar:<{self.WIDTH}}] {done}/{self.games} games over, {detail}"
        if self.in_place and text != self._text:
            print(f"\r{text}", end="", file=self.stream, flush=True)
        elif not self.in_place and bar != self._bar:
            print(text, file=self.stream, flush=True)
        self._text, self._bar = text, bar

    def close(self) -> None:
        """End the line on a terminal."""
        if self.enabled and self.in_place and self._text is not None:
            print(file=self.stream, flush=True)


def evaluate(path: str | Path, games: int, seed: int = 0, max_ticks: int = 100_000,
             start_level: int = 1, show_progress: bool = True,
             video: VideoRequest | None = None, checkpoint: str = "latest") -> dict:
    """Summaries (sim.play.summary) of the network of `checkpoint` (restore_checkpoint), the
    expert and a random policy. With `video`, the first `video.games` games of the policies it
    names are also written to a video file (described under results["video"])."""
    learner, restored = restore_checkpoint(path, checkpoint)
    policies = {"network": greedy_policy(learner), "expert": "expert", "random": "random"}
    results = {**checkpoint_facts(path, checkpoint, restored), "games": games, "seed": seed,
               "env": "sim"}
    recorders = {}
    for name in POLICY_ORDER:
        line = ProgressLine(name, games, enabled=show_progress)

        def progress(ticks, finished, line=line):
            line.update(finished, f"{ticks:,} ticks")

        if video is not None and name in video.policies:
            q_values = network_q_values(learner) if name == "network" and video.q_overlay \
                else None
            recorders[name] = play.FrameRecorder(video.games, q_values)
        # Only the network reads parameters: the others' rollouts compile as in `sim play`.
        params = restored.train_state.params if name == "network" else None
        stats = play.play(policies[name], games, max_ticks=max_ticks, seed=seed,
                          start_level=start_level, params=params, progress=progress,
                          recorder=recorders.get(name))
        line.close()
        results[name] = play.summary(jax.device_get(stats))
    if video is not None:
        results["video"] = write_video(video, {name: recorders[name].recordings()
                                               for name in video.policies})
    return results


class ServedPolicy:
    """The server's policy during a served evaluation: `mode` is one of POLICY_ORDER."""

    def __init__(self, learner: learner_lib.Learner, params, seed: int = 0):
        self.inference = Inference(learner, "float32")
        self.params = params
        self.mode = POLICY_ORDER[0]
        self._rng = np.random.default_rng(seed)

    def __call__(self, client_ids: np.ndarray, batch: FrameBatch) -> PolicyOutput:
        n = len(batch)
        if self.mode == "network":
            joint = np.asarray(self.inference.greedy_actions(self.params, batch.state))
        elif self.mode == "expert":
            joint = F.expert_joint_action(batch.expert_target, batch.player_seg,
                                          batch.is_open != 0, batch.expert_fire,
                                          batch.expert_zap)
        else:
            joint = self._rng.integers(0, F.NUM_ACTIONS, n)
        return PolicyOutput(joint=np.asarray(joint, np.int32),
                            is_expert=np.full(n, self.mode == "expert"))


class GameRecorder:
    """The server's sink during a served evaluation: per client, the game in progress, from
    its start (game mode's real-game bit set) to game over (the bit cleared). A game counts
    only if it started under the current policy; a client that leaves loses its game."""

    def __init__(self):
        self.games: list[dict] = []
        self._current: dict[int, dict] = {}  # client id -> the game it is playing
        self._in_game: dict[int, bool] = {}
        self.frames = 0

    def restart(self) -> None:
        """A new policy takes over: games in progress began under the old one."""
        self.games = []
        self._current.clear()

    def push(self, client_ids: np.ndarray, batch: FrameBatch, output: PolicyOutput) -> None:
        real = (batch.game_mode & F.GAME_MODE_REAL_GAME_BIT) != 0
        self.frames += len(client_ids)
        for row, client in enumerate(client_ids.tolist()):
            was_in_game = self._in_game.get(client)
            self._in_game[client] = bool(real[row])
            if real[row] and was_in_game is False:
                self._current[client] = {"score": 0, "level": 0, "deaths": 0,
                                         "death_level_sum": 0, "ticks": 0}
            game = self._current.get(client)
            if game is None:
                continue
            if real[row]:
                level = int(batch.level[row]) + 1
                game["score"] = int(batch.score[row])
                game["level"] = max(game["level"], level)
                game["ticks"] += 1
                if batch.done[row]:
                    game["deaths"] += 1
                    game["death_level_sum"] += level
            else:
                self.games.append(self._current.pop(client))

    def disconnect(self, client_id: int) -> None:
        self._current.pop(client_id, None)
        self._in_game.pop(client_id, None)


def evaluate_served(path: str | Path, games: int, server_cfg: ServerConfig, seed: int = 0,
                    timeout_s: float = 3600.0, show_progress: bool = True,
                    on_listening=None, checkpoint: str = "latest") -> dict:
    """Serve the network of `checkpoint`, then the expert, then a random policy to the clients
    that connect (MAME or sim clients) until each has finished `games` whole games.
    `on_listening(address)` is called once the server listens."""
    learner, restored = restore_checkpoint(path, checkpoint)
    policy = ServedPolicy(learner, restored.train_state.params, seed)
    recorder = GameRecorder()
    server = GameServer(server_cfg, policy, recorder)
    results = {**checkpoint_facts(path, checkpoint, restored), "games": games, "seed": seed,
               "env": "mame"}
    if show_progress:
        host, port = server.address[:2]
        print(f"serving the evaluation on {host}:{port}; connect MAME or sim clients",
              file=sys.stderr)
    if on_listening is not None:
        on_listening(server.address)
    deadline = time.monotonic() + timeout_s
    try:
        for name in POLICY_ORDER:
            policy.mode = name
            recorder.restart()
            line = ProgressLine(name, games, enabled=show_progress)
            try:
                while len(recorder.games) < games:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name}: {len(recorder.games)} of {games} games "
                                           f"finished in {timeout_s:.0f} s")
                    server.poll(0.05)
                    line.update(len(recorder.games),
                                f"{server.stats.clients_connected} clients")
            finally:
                line.close()  # an error message starts on a line of its own
            finished = recorder.games[:games]
            stats = {key: np.asarray([g[key] for g in finished]) for key in finished[0]}
            results[name] = play.summary({"finished": np.ones(games, bool), **stats})
    finally:
        server.close()
    return results


CLIP_SIZE = 128  # pixels of a periodic evaluation's clip for the trackers


class EvaluationStopped(Exception):
    """The run stopped during a periodic evaluation."""


class PeriodicEvaluator:
    """The periodic evaluation of a run, on its own supervised thread ("evaluator"): every
    `run.eval_interval` updates the greedy network of that moment plays the same
    `run.eval_games` seeded simulator games, on the level the run's games start on (training
    goes on meanwhile). Its figures are
    `latest` (for the metrics records); the best-scoring train state so far is kept in
    checkpoints/best/ (one checkpoint, which the run's checkpoint pruning never touches), so
    `eval --checkpoint best` and `train --init-from RUN:best` can take it. With `clip_sinks`
    (the trackers' `video(tag, images, step)`), the first game of each evaluation is filmed
    (small pictures, one per tick) and handed to them."""

    def __init__(self, cfg: Config, checkpoints: Path, learner: learner_lib.Learner,
                 learning: Learning, counters: Callable[[], dict], supervisor: Supervisor,
                 stop: threading.Event):
        self.cfg, self.learner, self.learning = cfg, learner, learning
        self.counters, self.stop = counters, stop
        self.latest: dict[str, float] = {}
        self.clip_sinks: list[Callable] = []
        self._policy = greedy_policy(learner)  # one function: the rollout compiles once
        self._next_at = (learning.updates // cfg.run.eval_interval + 1) * cfg.run.eval_interval
        # A resumed run keeps its best: a new one must score higher.
        self._best = checkpoints / BEST_DIR
        self._checkpointer = (Checkpointer(self._best, keep=1, async_save=False)
                              if self._best.is_dir() else None)
        best = self._checkpointer.latest_step() if self._checkpointer else None
        self.best_score = (float(self._checkpointer.counters(best).get("eval_score", -1))
                           if best is not None else -1.0)
        # Not checked for stalls: a game of a good network takes as long as it lives.
        self.watch = supervisor.watch("evaluator", busy=None)

    def start(self) -> None:
        self.watch.start(self._run)

    def close(self) -> None:
        self.watch.join(timeout=60)
        if self._checkpointer is not None:
            self._checkpointer.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.watch.beat()
            if self.learning.updates < self._next_at:
                self.stop.wait(0.5)
                continue
            with self.learning.lock:  # a copy: the live state is donated to the next update
                state = jax.tree.map(jnp.copy, self.learning.state)
                updates, counters = self.learning.updates, self.counters()
            interval = self.cfg.run.eval_interval
            self._next_at = (updates // interval + 1) * interval
            try:
                self._evaluate(state, updates, counters)
            except EvaluationStopped:
                return

    def _evaluate(self, state, updates: int, counters: dict) -> None:
        run = self.cfg.run

        def progress(ticks, finished):
            self.watch.beat()
            if self.stop.is_set():
                raise EvaluationStopped

        started = time.monotonic()
        recorder = play.FrameRecorder(1) if self.clip_sinks else None
        stats = play.play(self._policy, run.eval_games, max_ticks=run.eval_max_ticks,
                          seed=run.eval_seed, start_level=self.cfg.games_start_level,
                          params=state.params, progress=progress, recorder=recorder)
        result = play.summary(jax.device_get(stats))
        if recorder is not None:
            game = recorder.recordings()[0]
            renderer = Renderer(CLIP_SIZE)
            images = [renderer.rgb(game.state[t], game.header_at(t), action=int(game.action[t]))
                      for t in range(len(game.action))]
            for sink in self.clip_sinks:
                sink("eval/game", images, counters["frames"])
        score = result["mean_score"]
        best = score > self.best_score
        if best:
            self.best_score = score
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(self._best, keep=1, async_save=False)
            self._checkpointer.save(updates, self.learner, state,
                                    {**counters, "eval_score": score}, self.cfg)
        self.latest = {"eval_score": score, "eval_level": result["mean_level"],
                       "eval_frames_per_life": result["frames_per_life"],
                       "eval_max_score": result["max_score"], "eval_updates": updates,
                       "eval_best_score": self.best_score,
                       "evaluations": self.latest.get("evaluations", 0) + 1}
        log.info("evaluation at update %d: mean score %s over %d games%s, level %.2f, %.0f "
                 "frames per life (%.0f s)", updates, f"{score:,.0f}", run.eval_games,
                 " (the best so far: checkpoints/best)" if best else
                 f" (best {self.best_score:,.0f})", result["mean_level"],
                 result["frames_per_life"], time.monotonic() - started)
