"""The replay's write path: emissions from the n-step accumulator into the buffer and the limiter,
and the game server's replay writer, which forms transitions from served frames.

A frame goes server → `ReplaySink.push` (transitions formed on the server thread, vectorised)
→ the writer thread → `Replay.add` → buffer; the simulator source calls `Replay.add` itself.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable

import numpy as np

from tempest_jax import features as F
from tempest_jax.config import ReplayConfig, RewardConfig
from tempest_jax.metrics import EpisodeStats, PeakWindow
from tempest_jax.policy import PolicyOutput
from tempest_jax.protocol import FrameBatch
from tempest_jax.replay.buffer import ReplayBuffer
from tempest_jax.replay.limiter import ReplayRatioLimiter
from tempest_jax.replay.nstep import Emission, NStepAccumulator, scaled_reward
from tempest_jax.supervisor import Supervisor

# The server's replay writer: batches queued at most (then the server waits), and how long it
# lets batches gather before each insert.
WRITE_QUEUE_BATCHES = 1024
WRITE_GATHER_S = 0.02


class Replay:
    """The replay buffer with its single writer path: accumulator emissions → buffer → limiter.
    `buffer` continues a restored one; `transitions` counts every transition ever stored.
    `limiter_slack`: samples the learner may run ahead of the replay ratio (a few dispatches)."""

    def __init__(self, cfg: ReplayConfig, num_streams: int, limiter_slack: int,
                 buffer: ReplayBuffer | None = None, transitions: int = 0):
        self.buffer = buffer if buffer is not None else ReplayBuffer.from_config(cfg)
        self.limiter = ReplayRatioLimiter.from_config(cfg, slack=limiter_slack,
                                                      size=len(self.buffer))
        self.accumulator = NStepAccumulator.from_config(cfg, num_streams,
                                                        first_serial=self.buffer.obs_written)
        self.transitions = transitions

    def add(self, emission: Emission) -> None:
        stored = self.buffer.add(emission)
        self.transitions += stored
        self.limiter.on_insert(stored, len(self.buffer))


class ReplaySink:
    """The server's sink: forms transitions on the server thread (cheap, vectorised) and hands
    them to a writer thread that inserts them in batches. The queue is bounded: when the
    writer falls behind, the server waits (backpressure) and the waits are counted."""

    def __init__(self, replay: Replay, reward_cfg: RewardConfig, stats: EpisodeStats,
                 frames_counter: Callable[[], int], supervisor: Supervisor | None = None):
        self.replay = replay
        self.reward_cfg = reward_cfg
        self.stats = stats
        self.frames_counter = frames_counter
        self.backpressure_waits = 0
        self._queue: queue.Queue[Emission | None] = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
        self._queue_peak = PeakWindow()
        self._watch = (supervisor or Supervisor()).watch(
            "replay-writer", busy=lambda: not self._queue.empty())
        self._watch.start(self._write)

    def push(self, client_ids: np.ndarray, batch: FrameBatch, output: PolicyOutput) -> None:
        reward = scaled_reward(batch.obj_reward, batch.subj_reward, self.reward_cfg)
        done = batch.done != 0
        emission = self.replay.accumulator.push(
            client_ids, batch.state.astype(np.float16), output.joint, reward, done,
            output.is_expert, F.action_applied(batch.gamestate, batch.game_mode, batch.state))
        self.stats.grow(int(client_ids.max()) + 1)
        self.stats.add(client_ids, reward, output.is_expert, done, batch.score, batch.level,
                       self.frames_counter())
        self._put(emission)

    def disconnect(self, client_id: int) -> None:
        self.stats.reset(np.asarray([client_id]))
        self._put(self.replay.accumulator.truncate([client_id]))

    def _put(self, emission: Emission | None) -> None:
        if self._queue.full():
            self.backpressure_waits += 1
        while True:
            if not self._watch.alive():
                raise RuntimeError("the replay writer thread has ended; frames can no longer "
                                   "be stored")
            with contextlib.suppress(queue.Full):
                self._queue.put(emission, timeout=0.1)
                break
        self._queue_peak.observe(self._queue.qsize())

    def queue_depths(self) -> tuple[int, int]:
        """(batches waiting for the writer now, at most since the previous call)."""
        depth = self._queue.qsize()
        return depth, self._queue_peak.take(depth)

    def _write(self) -> None:
        while True:
            items = [self._queue.get()]
            self._watch.beat()
            if items[0] is not None:
                # Gather a few milliseconds of batches into one insert: per-insert overhead,
                # paid under the GIL the server thread needs, dominates small batches.
                time.sleep(WRITE_GATHER_S)
            with contextlib.suppress(queue.Empty):
                while items[-1] is not None and len(items) < WRITE_QUEUE_BATCHES:
                    items.append(self._queue.get_nowait())
            stop = items[-1] is None
            emissions = [e for e in items if e is not None]
            if emissions:
                self.replay.add(Emission.concatenate(emissions))
            if stop:
                return

    def close(self) -> None:
        """Write everything queued, then stop the writer (at once if it has failed)."""
        if self._watch.alive():
            with contextlib.suppress(RuntimeError):  # it ended meanwhile
                self._put(None)
            self._watch.join()
