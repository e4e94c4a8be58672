"""Background sampling: a thread keeps the next batches ready while the learner computes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from tempest_jax.replay.buffer import Batch, ReplayBuffer
from tempest_jax.replay.limiter import ReplayRatioLimiter
from tempest_jax.supervisor import Supervisor

_POLL_S = 0.05
CLOSE_TIMEOUT_S = 10.0


class Prefetcher:
    """Samples `num_batches` × `batch_size` stacked batches (`ReplayBuffer.sample_many`, or
    `sample` when num_batches is None) into a queue of `depth`, respecting `limiter` if given.

    `beta` is called before each draw, so an annealed β follows the run. The learner calls
    `get()`, computes, then `buffer.update_priorities(batch.index, loss)`. The sampling thread
    runs under `supervisor` (a run's, or one of its own); its error is re-raised by `get()`.
    """

    def __init__(self, buffer: ReplayBuffer, batch_size: int, beta: Callable[[], float],
                 *, num_batches: int | None = None, seed: int = 0, depth: int = 2,
                 limiter: ReplayRatioLimiter | None = None,
                 supervisor: Supervisor | None = None):
        self.buffer = buffer
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.beta = beta
        self.limiter = limiter
        self._rng = np.random.default_rng(seed)
        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._watch = (supervisor or Supervisor()).watch("replay-prefetch")
        self._watch.start(self._run)

    def _samples_per_draw(self) -> int:
        return self.batch_size * (self.num_batches or 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch.beat()
            if self.limiter is not None:
                if not self.limiter.acquire(self._samples_per_draw(), timeout=_POLL_S):
                    continue
            elif len(self.buffer) == 0:
                self._stop.wait(_POLL_S)
                continue
            if self.num_batches is None:
                batch = self.buffer.sample(self.batch_size, self.beta(), self._rng)
            else:
                batch = self.buffer.sample_many(self.num_batches, self.batch_size,
                                                self.beta(), self._rng)
            while not self._stop.is_set():
                self._watch.beat()
                try:
                    self._queue.put(batch, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue

    def get(self, timeout: float | None = None) -> Batch:
        """The next batch; raises TimeoutError if none arrives within `timeout` seconds."""
        waited = 0.0
        while True:
            if self._watch.error is not None:
                raise RuntimeError("replay prefetch thread failed") from self._watch.error
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                waited += _POLL_S
                if timeout is not None and waited >= timeout:
                    raise TimeoutError(f"no replay batch within {timeout} s") from None

    def close(self) -> None:
        self._stop.set()
        # Bounded: a thread stalled inside a draw is the supervisor's to report, not a reason
        # for the run's shutdown to hang.
        self._watch.join(timeout=CLOSE_TIMEOUT_S)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
