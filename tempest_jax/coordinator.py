"""The multi-process lockstep: before every learner dispatch all processes agree on what to do.

Each process contributes its `Facts` (whether it holds a batch, whether it is asked to stop or
save, its frames, replay size, transitions, clients, its learning-rate scale and its episode
figures) to one `distributed.Agreement`; every process gets back the same table and so the same
`Decision`: update (all hold a batch), save (any asks), stop (any asks). Every process then
issues the same device collectives in the same order. A process without a batch yet holds the
others back. With one process the agreement is local and costs nothing.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from typing import Any

import jax
import numpy as np

from tempest_jax.config import Config, ConfigError
from tempest_jax.distributed import Agreement, Watchdog

(FACT_READY, FACT_STOP, FACT_SAVE, FACT_FRAMES, FACT_REPLAY, FACT_TRANSITIONS,
 FACT_CLIENTS) = range(7)
FLOAT_LR_SCALE = 0
# Episode figures combined over processes: a mean of the processes that have one, or the max.
MEAN_OVER_PROCESSES = ("reward_100k", "reward_1m", "reward_5m", "episode_reward",
                       "episode_length", "score", "level", "expert_share")
MAX_OVER_PROCESSES = ("score_max", "level_max")


def lockstep_for(cfg: Config) -> Lockstep | None:
    """The run's lockstep with the other processes; None when it has none."""
    if jax.process_count() == 1:
        return None
    if cfg.replay.snapshot:
        raise ConfigError("replay.snapshot is not supported with distributed training yet: "
                          "every process has its own replay shard")
    return Lockstep(cfg.distributed.collective_timeout_s)


@dataclasses.dataclass(frozen=True)
class Facts:
    """What one process tells the others at an agreement."""

    ready: bool
    stop: bool
    save: bool
    frames: int
    replay_size: int
    transitions: int
    clients: int
    lr_scale: float
    episodes: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What every process does after an agreement (the same everywhere)."""

    update: bool
    save: bool
    stop: bool
    run_frames: int    # the run's frames: every process's, summed
    lr_scale: float    # process 0's (its dashboard's and keyboard's)


class Lockstep:
    """Agreements of this process with the others, and the run-wide figures of the last one.
    `guard(what)` bounds a collective that follows an agreement (a peer alive but stuck ends
    this process after `timeout_s`)."""

    def __init__(self, timeout_s: float):
        self.agreement = Agreement(timeout_s)
        self._watchdog = Watchdog(timeout_s)
        self._table: np.ndarray | None = None
        self._values: np.ndarray | None = None

    def guard(self, what: str) -> AbstractContextManager[None]:
        return self._watchdog.guard(what)

    def agree(self, facts: Facts) -> Decision:
        ints = [0] * 7
        ints[FACT_READY], ints[FACT_STOP], ints[FACT_SAVE] = (
            int(facts.ready), int(facts.stop), int(facts.save))
        ints[FACT_FRAMES], ints[FACT_REPLAY] = facts.frames, facts.replay_size
        ints[FACT_TRANSITIONS], ints[FACT_CLIENTS] = facts.transitions, facts.clients
        floats = [facts.lr_scale] + [float(facts.episodes.get(name, np.nan))
                                     for name in MEAN_OVER_PROCESSES + MAX_OVER_PROCESSES]
        table, values = self.agreement.gather(ints, floats)
        self._table, self._values = table, values
        return Decision(update=bool(table[:, FACT_READY].all()),
                        save=bool(table[:, FACT_SAVE].any()),
                        stop=bool(table[:, FACT_STOP].any()),
                        run_frames=int(table[:, FACT_FRAMES].sum()),
                        lr_scale=float(values[0, FLOAT_LR_SCALE]))

    @property
    def agreed(self) -> bool:
        return self._table is not None

    def transitions(self) -> int:
        """The run's transitions (every process's) as of the last agreement."""
        return int(self._table[:, FACT_TRANSITIONS].sum())

    def combined(self, served: bool) -> dict[str, Any]:
        """The run-wide figures of the last agreement: sums of the processes' counts, episode
        figures averaged (or maxed) over the processes that have them."""
        table, values = self._table, self._values
        combined = {"processes": int(table.shape[0]),
                    "replay_size": int(table[:, FACT_REPLAY].sum()),
                    "transitions": int(table[:, FACT_TRANSITIONS].sum()),
                    "frames_by_process": [int(f) for f in table[:, FACT_FRAMES]]}
        if served:
            combined["clients"] = int(table[:, FACT_CLIENTS].sum())
        episodes = values[:, 1:]
        for column, name in enumerate(MEAN_OVER_PROCESSES + MAX_OVER_PROCESSES):
            present = episodes[:, column][~np.isnan(episodes[:, column])]
            if len(present):
                combined[name] = float(present.mean() if name in MEAN_OVER_PROCESSES
                                       else present.max())
        return combined
