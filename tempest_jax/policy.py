"""What the game server asks of a policy and of a frame sink: the interfaces between serving,
inference and the replay sink."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from tempest_jax.protocol import FrameBatch


@dataclasses.dataclass(frozen=True)
class PolicyOutput:
    """Actions for a batch of frames: joint indices and whether each came from the expert."""

    joint: np.ndarray  # (n,) int
    is_expert: np.ndarray  # (n,) bool


class Policy(Protocol):
    def __call__(self, client_ids: np.ndarray, batch: FrameBatch) -> PolicyOutput: ...


@runtime_checkable
class AsyncPolicy(Policy, Protocol):
    def start(self, client_ids: np.ndarray,
              batch: FrameBatch) -> Callable[[], PolicyOutput]:
        """Begin computing the batch's actions; the returned function waits for them. The
        server calls it before starting the next batch."""
        ...


class FrameSink(Protocol):
    """Receives every valid frame with the action chosen on it (the replay side forms
    transitions from consecutive frames of one client)."""

    def push(self, client_ids: np.ndarray, batch: FrameBatch, output: PolicyOutput) -> None: ...

    def disconnect(self, client_id: int) -> None: ...
