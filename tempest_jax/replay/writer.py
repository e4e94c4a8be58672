"""The replay's write path: emissions from the n-step accumulator into the buffer and the limiter,
and the game server's sink, which forms transitions from served frames and stores them.

A frame goes server → `ReplaySink.push` (transitions formed on the server thread, vectorised)
→ `Replay.add` every few batches, on the same thread → buffer; the simulator source calls
`Replay.add` itself.
"""

from __future__ import annotations

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

# Answered batches per insert of the game server's sink: enough to share an insert's fixed cost,
# few enough that one insert stays shorter than a batch's inference.
INSERT_EVERY_BATCHES = 4


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
    """The game server's sink, on the server thread: forms each answered batch's transitions
    (vectorised over its clients) and stores them in the replay every `INSERT_EVERY_BATCHES`
    batches, at each disconnect and at `close`. The server pushes while the next batch's
    inference runs, so no reply waits for it. It has no thread of its own: a second Python
    thread inserting holds the GIL that the server loop takes back after each system call, and
    the replies it delays made the reply latency's tail (docs/architecture.md, "A frame's path").
    Storing a few batches at once shares an insert's fixed cost and keeps each insert short."""

    def __init__(self, replay: Replay, reward_cfg: RewardConfig, stats: EpisodeStats,
                 frames_counter: Callable[[], int]):
        self.replay = replay
        self.reward_cfg = reward_cfg
        self.stats = stats
        self.frames_counter = frames_counter
        self._formed: list[Emission] = []
        self._formed_peak = PeakWindow()

    def push(self, client_ids: np.ndarray, batch: FrameBatch, output: PolicyOutput) -> None:
        reward = scaled_reward(batch.obj_reward, batch.subj_reward, self.reward_cfg)
        done = batch.done != 0
        emission = self.replay.accumulator.push(
            client_ids, batch.state.astype(np.float16), output.joint, reward, done,
            output.is_expert, F.action_applied(batch.gamestate, batch.game_mode, batch.state))
        self.stats.grow(int(client_ids.max()) + 1)
        self.stats.add(client_ids, reward, output.is_expert, done, batch.score, batch.level,
                       self.frames_counter())
        self._hold(emission)
        if len(self._formed) >= INSERT_EVERY_BATCHES:
            self.flush()

    def disconnect(self, client_id: int) -> None:
        self.stats.reset(np.asarray([client_id]))
        self._hold(self.replay.accumulator.truncate([client_id]))
        self.flush()

    def _hold(self, emission: Emission) -> None:
        self._formed.append(emission)
        self._formed_peak.observe(len(self._formed))

    def flush(self) -> None:
        """Store every emission formed so far."""
        if self._formed:
            formed, self._formed = self._formed, []
            self.replay.add(Emission.concatenate(formed) if len(formed) > 1 else formed[0])

    def queue_depths(self) -> tuple[int, int]:
        """(batches formed and not yet stored now, at most since the previous call); read from
        any thread."""
        depth = len(self._formed)
        return depth, self._formed_peak.take(depth)

    def close(self) -> None:
        """Store what is left (call it once the server thread has ended)."""
        self.flush()
