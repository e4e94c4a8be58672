"""Shared pieces of the learner tests: a tabular network and batch builders."""

import flax.linen as nn
import numpy as np

from tempest_jax.learner import Batch


class TableNetwork(nn.Module):
    """Logits are a table row per one-hot observation: every distribution is representable,
    so a learner must reach the exact fixed point."""

    num_actions: int
    num_atoms: int

    @nn.compact
    def __call__(self, obs):
        logits = nn.Dense(self.num_actions * self.num_atoms, use_bias=False,
                          kernel_init=nn.initializers.normal(0.1))(obs)
        return logits.reshape((*obs.shape[:-1], self.num_actions, self.num_atoms))


def random_batch(rng: np.random.Generator, batch: int, obs_size: int, num_actions: int,
                 leading: tuple[int, ...] = (), expert_fraction: float = 0.3) -> Batch:
    shape = (*leading, batch)
    return Batch(
        obs=rng.uniform(0, 1, (*shape, obs_size)).astype(np.float16),
        action=rng.integers(0, num_actions, shape).astype(np.int32),
        reward=rng.normal(0, 1, shape).astype(np.float32),
        discount=np.where(rng.random(shape) < 0.1, 0.0, 0.99 ** 3).astype(np.float32),
        next_obs=rng.uniform(0, 1, (*shape, obs_size)).astype(np.float16),
        is_expert=rng.random(shape) < expert_fraction,
        weight=rng.uniform(0.2, 1.0, shape).astype(np.float32),
    )
