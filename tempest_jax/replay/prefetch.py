"""Background sampling: a thread keeps the next batches ready while the learner computes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from tempest_jax.replay.buffer import Batch, ReplayBuffer
from tempest_jax.replay.limiter import ReplayRatioLimiter

_POLL_S = 0.05


class Prefetcher:
    """Samples `num_batches` × `batch_size` stacked batches (`ReplayBuffer.sample_many`, or
    `sample` when num_batches is None) into a queue of `depth`, respecting `limiter` if given.

    `beta` is called before each draw, so an annealed β follows the run. The learner calls
    `get()`, computes, then `buffer.update_priorities(batch.index, loss)`. An error in the
    sampling thread is re-raised by `get()`.
    """

    def __init__(self, buffer: ReplayBuffer, batch_size: int, beta: Callable[[], float],
                 *, num_batches: int | None = None, seed: int = 0, depth: int = 2,
                 limiter: ReplayRatioLimiter | None = None):
        self.buffer = buffer
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.beta = beta
        self.limiter = limiter
        self._rng = np.random.default_rng(seed)
        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay-prefetch", daemon=True)
        self._thread.start()

    def _samples_per_draw(self) -> int:
        return self.batch_size * (self.num_batches or 1)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
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
                    try:
                        self._queue.put(batch, timeout=_POLL_S)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the learner thread by get()
            self._error = e

    def get(self, timeout: float | None = None) -> Batch:
        """The next batch; raises TimeoutError if none arrives within `timeout` seconds."""
        waited = 0.0
        while True:
            if self._error is not None:
                raise RuntimeError("replay prefetch thread failed") from self._error
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                waited += _POLL_S
                if timeout is not None and waited >= timeout:
                    raise TimeoutError(f"no replay batch within {timeout} s") from None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
