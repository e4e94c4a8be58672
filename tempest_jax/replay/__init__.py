"""Prioritized n-step replay (see docs/architecture.md, "Replay").

- `sumtree.SumTree`: float64 sum tree, batched updates, stratified sampling.
- `nstep.NStepAccumulator`: n-step transitions formed at insert time for many streams at once.
- `buffer.ReplayBuffer`: the observation ring, priorities, sampling, pre-death boost.
- `writer.Replay`: the one write path (accumulator → buffer → limiter); `writer.ReplaySink`:
  the game server's sink, which forms and stores transitions on the server thread.
- `prefetch.Prefetcher`: a background sampler for the learner thread.
- `limiter.ReplayRatioLimiter`: samples per inserted transition held near a target.
- `snapshot`: save/load of the whole buffer.
"""

from tempest_jax.replay.buffer import Batch, ReplayBuffer
from tempest_jax.replay.limiter import ReplayRatioLimiter
from tempest_jax.replay.nstep import Emission, NStepAccumulator, scaled_reward
from tempest_jax.replay.prefetch import Prefetcher
from tempest_jax.replay.snapshot import ReplaySnapshotError, load_snapshot, save_snapshot
from tempest_jax.replay.sumtree import SumTree
from tempest_jax.replay.writer import Replay, ReplaySink

__all__ = ["Batch", "Emission", "NStepAccumulator", "Prefetcher", "Replay", "ReplayBuffer",
           "ReplayRatioLimiter", "ReplaySink", "ReplaySnapshotError", "SumTree", "load_snapshot",
           "save_snapshot", "scaled_reward"]
