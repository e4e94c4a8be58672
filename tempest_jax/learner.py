"""The learner: a pure, jitted distributional (C51) double-DQN update, data-parallel over devices.

One update (docs/learning.md):

1. The online network picks a* = argmax_a Q(s', a); the target network evaluates p'(s', a*).
2. The target distribution is p' moved to r + discount·z (discount = γ^h, 0 at a terminal) and
   projected back onto the fixed support with the dense, scatter-free form
   m_j = Σ_i p'_i · clip(1 − |Tz_i − z_j| / Δz, 0, 1).
3. The RL loss is the importance-weighted cross-entropy −Σ m·log p(s, a); the unweighted
   per-row cross-entropy is returned as the rows' new priorities.
4. A behavioural-cloning loss on expert rows (see `bc_cross_entropy`) is added with a weight
   from the schedule.
5. Gradients are clipped by global norm and applied with Adam at the scheduled learning rate;
   an update whose loss or gradient is not finite is skipped and counted; every
   `target_update` applied updates the target network becomes a hard copy of the online one.

`update_many` runs K such updates in one dispatch with `lax.scan` over K pre-sampled batches.
Parallelism is `jax.jit` with `NamedSharding` over a one-axis device mesh: parameters are
replicated, batch rows are split across devices, and XLA inserts the gradient all-reduce. With
several processes (`tempest_jax.distributed`) the mesh spans every process's devices: each
process passes its own rows of the global batch and gets back its rows' priorities. Inference
(the actors' forward pass, on each process's own devices) is `actor.Inference`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tempest_jax import distributed, schedules
from tempest_jax.config import Config, ConfigError, LearnerConfig, NetworkConfig
from tempest_jax.features import JOINT_SPINNER, NUM_ACTIONS, STATE_SIZE
from tempest_jax.networks import TempestNetwork

DATA_AXIS = "data"
METRIC_NAMES = ("loss", "rl_loss", "bc_loss", "grad_norm", "q_mean", "q_min", "q_max", "lr",
                "skipped", "agreement")

Params = Any


class Batch(NamedTuple):
    """Transitions as the replay produces them; one leading K axis in a K-update dispatch."""

    obs: jax.Array        # (B, obs_size) float16
    action: jax.Array     # (B,) int32 or uint8
    reward: jax.Array     # (B,) float32, the n-step return, already scaled
    discount: jax.Array   # (B,) float32, γ^h, 0 at a terminal
    next_obs: jax.Array   # (B, obs_size) float16, the state h steps later
    is_expert: jax.Array  # (B,) bool
    weight: jax.Array     # (B,) float32 importance-sampling weights


class TrainState(NamedTuple):
    params: Params
    target_params: Params
    opt_state: optax.OptState
    step: jax.Array     # int32: applied updates
    skipped: jax.Array  # int32: updates skipped because the loss or gradient was not finite


def make_support(v_min: float, v_max: float, num_atoms: int) -> np.ndarray:
    """The atoms z_i, computed in float64 and then cast, so they are the nearest float32 values
    to the exact grid (float32 linspace accumulates rounding error across the atoms)."""
    return np.linspace(v_min, v_max, num_atoms, dtype=np.float64).astype(np.float32)


def categorical_projection(target_atoms: jax.Array, probs: jax.Array, support: jax.Array,
                           atom_gap: float) -> jax.Array:
    """Project probabilities `probs` (B, N) sitting at `target_atoms` (B, N) onto `support` (N,).

    Each mass is split between the two neighbouring atoms in proportion to closeness (all of it
    to one atom when it lands exactly on it); targets outside the support are clipped to its
    ends. Dense (a (B, N, N) weight tensor), so there is no scatter.
    """
    clipped = jnp.clip(target_atoms, support[0], support[-1])
    closeness = 1.0 - jnp.abs(clipped[:, None, :] - support[None, :, None]) / atom_gap
    return jnp.einsum("bji,bi->bj", jnp.clip(closeness, 0.0, 1.0), probs)


def expected_q(logits: jax.Array, support: jax.Array) -> jax.Array:
    """(…, A, N) logits → (…, A) expected returns: the softmax's mean of the support, as
    Σ e·z / Σ e with e = exp(logits − max). One division per action instead of one per atom,
    and no matrix product: at batch 64 on CPU that halves what the head adds to the forward
    pass of the actors' greedy choice."""
    weights = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    return jnp.sum(weights * support, axis=-1) / jnp.sum(weights, axis=-1)


def bc_cross_entropy(q: jax.Array, action: jax.Array, temperature: float) -> jax.Array:
    """Per-row cross-entropy of the stored action under a softmax of Q / `temperature`.

    The temperature is fixed, so the loss's gradient with respect to Q, (softmax − one-hot) /
    temperature, is bounded (its norm is at most √2 / temperature) whatever the spread of Q over
    the actions: the BC weight scales the BC gradient by what it says, early in training (Q
    values close together) as late. (Dividing by the spread instead, to make the loss scale-free,
    multiplies the gradient by 1/spread, and a row whose values are all equal makes it NaN.)
    """
    logits = q / temperature
    chosen = jnp.take_along_axis(logits, action[:, None], axis=-1)[:, 0]
    return jax.nn.logsumexp(logits, axis=-1) - chosen


def atom_gap(support: np.ndarray) -> float:
    """Δz, from the float64 ends of the support."""
    return float((np.float64(support[-1]) - np.float64(support[0])) / (support.shape[0] - 1))


def double_dqn_target(next_online_logits: jax.Array, next_target_logits: jax.Array,
                      reward: jax.Array, discount: jax.Array, support: jax.Array,
                      gap: float) -> jax.Array:
    """(B, N) target distribution: the online network picks a* = argmax_a Q(s', a), the target
    network's distribution for a* is shifted to reward + discount·z and projected. A terminal
    (discount 0) puts all the mass at the reward."""
    next_action = jnp.argmax(expected_q(next_online_logits, support), axis=-1)
    next_logits = jnp.take_along_axis(next_target_logits, next_action[:, None, None], axis=1)[:, 0]
    target_atoms = reward[:, None] + discount[:, None] * support[None, :]
    return categorical_projection(target_atoms, jax.nn.softmax(next_logits, axis=-1), support,
                                  gap)


def make_loss_fn(apply_fn: Callable[[Params, jax.Array], jax.Array], support: np.ndarray,
                 bc_temperature: float, action_groups: np.ndarray):
    """`loss_fn(params, target_params, batch, bc_weight) -> (loss, (aux, cross_entropy))`.

    `apply_fn(params, obs)` gives logits (B, A, N); `action_groups[a]` is the class of action a
    for the agreement metric (for Tempest, the spinner direction). `cross_entropy` is the
    unweighted per-row RL loss, the rows' new priorities.
    """
    gap = atom_gap(support)
    support = jnp.asarray(support)
    action_groups = jnp.asarray(action_groups)

    def loss_fn(params, target_params, batch: Batch, bc_weight):
        obs = batch.obs.astype(jnp.float32)
        next_obs = batch.next_obs.astype(jnp.float32)
        action = batch.action.astype(jnp.int32)

        target = jax.lax.stop_gradient(double_dqn_target(
            apply_fn(params, next_obs), apply_fn(target_params, next_obs), batch.reward,
            batch.discount, support, gap))

        logits = apply_fn(params, obs)
        chosen_logits = jnp.take_along_axis(logits, action[:, None, None], axis=1)[:, 0]
        cross_entropy = -jnp.sum(target * jax.nn.log_softmax(chosen_logits, axis=-1), axis=-1)
        rl_loss = jnp.mean(batch.weight * cross_entropy)

        q = expected_q(logits, support)
        expert = batch.is_expert.astype(jnp.float32)
        num_expert = jnp.sum(expert)
        bc_loss = jnp.sum(expert * bc_cross_entropy(q, action, bc_temperature)) / jnp.maximum(
            num_expert, 1.0)
        loss = rl_loss + bc_weight * (num_expert / obs.shape[0]) * bc_loss

        q = jax.lax.stop_gradient(q)
        state_value = jnp.max(q, axis=-1)
        agreement = jnp.mean(action_groups[jnp.argmax(q, axis=-1)] == action_groups[action])
        aux = {"rl_loss": rl_loss, "bc_loss": bc_loss, "q_mean": jnp.mean(state_value),
               "q_min": jnp.min(state_value), "q_max": jnp.max(state_value),
               "agreement": agreement.astype(jnp.float32)}
        return loss, (aux, cross_entropy)

    return loss_fn


def make_train_step(loss_fn, optimizer: optax.GradientTransformation,
                    lr_schedule: optax.Schedule, target_update: int):
    """The pure update `step(state, batch, bc_weight, lr_scale) -> (state, metrics,
    priorities)`; `lr_scale` multiplies the scheduled learning rate (the operator's L/l keys)."""

    def step(state: TrainState, batch: Batch, bc_weight,
             lr_scale=1.0) -> tuple[TrainState, dict, jax.Array]:
        (loss, (aux, cross_entropy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch, bc_weight)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        lr = lr_schedule(state.step) * lr_scale
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, jax.tree.map(lambda u: -lr * u, updates))
        keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o),
                                                       new, old)
        params = keep_if_finite(params, state.params)
        opt_state = keep_if_finite(opt_state, state.opt_state)
        step_count = state.step + finite.astype(jnp.int32)
        sync = finite & (step_count % target_update == 0)
        target_params = jax.tree.map(lambda o, t: jnp.where(sync, o, t), params,
                                     state.target_params)

        new_state = TrainState(params, target_params, opt_state, step_count,
                               state.skipped + (~finite).astype(jnp.int32))
        metrics = dict(aux, loss=loss, grad_norm=grad_norm, lr=jnp.asarray(lr, jnp.float32),
                       skipped=(~finite).astype(jnp.float32))
        # A row whose loss is not finite (a corrupt observation) gets priority 0, so the replay
        # (which adds its priority ε) almost never draws it again.
        priorities = jnp.where(jnp.isfinite(cross_entropy), cross_entropy, 0.0)
        return new_state, metrics, priorities

    return step


def make_optimizer(grad_clip: float, adam_eps: float) -> optax.GradientTransformation:
    """Global-norm clipping (0 disables it) then Adam's direction; the learning rate is applied
    by the step from the schedule, so the step counter is the one source of the schedule."""
    clip = optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity()
    return optax.chain(clip, optax.scale_by_adam(eps=adam_eps))


class Learner:
    """Initialisation and updates of one network, data-parallel over `devices` (default: every
    device of every process). Inference is `actor.Inference`'s.

    Parameters are replicated on a one-axis mesh; batch rows are split across its devices, so
    the batch size must be a multiple of the device count. With several processes each one
    passes its `local_batch_rows` share to `update`/`update_many` (all processes call them in
    the same order). `params` are never donated, so a params pytree published to an actor
    thread stays valid while later updates run; the rest of the train state is donated to the
    update that consumes it.
    """

    def __init__(self, cfg: LearnerConfig, network_cfg: NetworkConfig,
                 network: nn.Module | None = None, obs_size: int = STATE_SIZE,
                 num_actions: int = NUM_ACTIONS, action_groups: Sequence[int] | None = None,
                 devices: Sequence[jax.Device] | None = None):
        self.cfg = cfg
        self.network = network if network is not None else TempestNetwork.from_config(
            network_cfg, num_actions)
        self.obs_size = obs_size
        self.num_actions = num_actions
        self.support = make_support(network_cfg.v_min, network_cfg.v_max, network_cfg.num_atoms)
        if action_groups is None:
            action_groups = (np.sign(JOINT_SPINNER) if num_actions == NUM_ACTIONS
                             else np.arange(num_actions))
        chex.assert_shape(np.asarray(action_groups), (num_actions,))

        devices = list(devices) if devices is not None else jax.devices()
        self.mesh = jax.make_mesh((len(devices),), (DATA_AXIS,),
                                  axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
        self.num_devices = len(devices)
        replicated = NamedSharding(self.mesh, P())
        rows = NamedSharding(self.mesh, P(DATA_AXIS))
        k_rows = NamedSharding(self.mesh, P(None, DATA_AXIS))
        self.replicated, self.rows, self.k_rows = replicated, rows, k_rows
        # This process's devices: inference runs on them (actor.Inference), and each process
        # feeds its share of every batch.
        self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
        self.num_local_devices = len(self.local_devices)
        self.multi_process = self.num_local_devices < self.num_devices
        if cfg.batch_size % self.num_devices:
            raise ConfigError(f"learner.batch_size ({cfg.batch_size}) must be a multiple of "
                              f"the {self.num_devices} devices the learner splits it over "
                              f"({jax.process_count()} processes)")

        self.optimizer = make_optimizer(cfg.grad_clip, cfg.adam_eps)
        self.lr_schedule = lambda step: schedules.learning_rate(step, cfg)
        self.loss_fn = make_loss_fn(self.network.apply, self.support, cfg.bc_temperature,
                                    np.asarray(action_groups))
        self.train_step = make_train_step(self.loss_fn, self.optimizer, self.lr_schedule,
                                          cfg.target_update)

        self._init = jax.jit(self._init_state, out_shardings=replicated)
        self._update = jax.jit(self._update_split, donate_argnums=(1,),
                               in_shardings=(replicated, replicated, rows, replicated),
                               out_shardings=(replicated, replicated, replicated, rows))
        self._update_many = jax.jit(self._update_many_split, donate_argnums=(1,),
                                    in_shardings=(replicated, replicated, k_rows, replicated,
                                                  replicated),
                                    out_shardings=(replicated, replicated, replicated, k_rows))

    # -- pure functions behind the jitted entry points ------------------------------------------

    def _init_state(self, key: jax.Array) -> TrainState:
        params = self.network.init(key, jnp.zeros((1, self.obs_size), jnp.float32))
        chex.assert_shape(self.network.apply(params, jnp.zeros((1, self.obs_size))),
                          (1, self.num_actions, self.support.shape[0]))
        # A distinct buffer for the target: it is donated while the online params are not.
        target_params = jax.tree.map(jnp.copy, params)
        return TrainState(params, target_params, self.optimizer.init(params),
                          jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def _update_split(self, params, rest: TrainState, batch: Batch, bc_weight):
        state, metrics, priorities = self.train_step(rest._replace(params=params), batch,
                                                     bc_weight)
        return state.params, state._replace(params=None), metrics, priorities

    def _update_many_split(self, params, rest: TrainState, batches: Batch, bc_weight, lr_scale):
        def body(state, batch):
            state, metrics, priorities = self.train_step(state, batch, bc_weight, lr_scale)
            return state, (metrics, priorities)

        state, (metrics, priorities) = jax.lax.scan(body, rest._replace(params=params), batches)
        return state.params, state._replace(params=None), metrics, priorities

    # -- public API -----------------------------------------------------------------------------

    def init(self, key: jax.Array) -> TrainState:
        """A fresh train state (target = online), replicated over the mesh."""
        return self._init(key)

    def update(self, state: TrainState, batch: Batch, bc_weight: float
               ) -> tuple[TrainState, dict[str, jax.Array], jax.Array]:
        """One update: (new state, scalar metrics, (B,) new priorities). `state` (except its
        params) is consumed."""
        self._check_batch(batch, leading=())
        if self.multi_process:
            batch = distributed.global_batch(batch, self.rows)
        params, rest, metrics, priorities = self._update(
            state.params, state._replace(params=None), batch, np.float32(bc_weight))
        return rest._replace(params=params), metrics, priorities

    def update_many(self, state: TrainState, batches: Batch, bc_weight: float,
                    lr_scale: float = 1.0
                    ) -> tuple[TrainState, dict[str, jax.Array], jax.Array]:
        """K updates in one dispatch over batches with a leading K axis: (new state, (K,)
        metrics, (K, B) priorities). `state` (except its params) is consumed. `lr_scale`
        multiplies the scheduled learning rate (a traced value: changing it never recompiles)."""
        self._check_batch(batches, leading=(batches.obs.shape[0],))
        if self.multi_process:
            batches = distributed.global_batch(batches, self.k_rows)
        # Host scalars: with several processes a jitted call takes them as one global value.
        params, rest, metrics, priorities = self._update_many(
            state.params, state._replace(params=None), batches, np.float32(bc_weight),
            np.float32(lr_scale))
        return rest._replace(params=params), metrics, priorities

    @property
    def local_batch_rows(self) -> int:
        """This process's rows of each global batch of `learner.batch_size`."""
        return self.cfg.batch_size * self.num_local_devices // self.num_devices

    def _check_batch(self, batch: Batch, leading: tuple[int, ...]) -> None:
        rows = batch.obs.shape[len(leading)]
        chex.assert_shape([batch.obs, batch.next_obs], (*leading, rows, self.obs_size))
        chex.assert_shape([batch.action, batch.reward, batch.discount, batch.is_expert,
                           batch.weight], (*leading, rows))
        if rows % self.num_local_devices:
            raise ValueError(f"batch size {rows} is not a multiple of the "
                             f"{self.num_local_devices} devices the learner splits it over"
                             + (" in this process" if self.multi_process else ""))


def make_learner(cfg: Config, network: nn.Module | None = None, obs_size: int = STATE_SIZE,
                 num_actions: int = NUM_ACTIONS, action_groups: Sequence[int] | None = None,
                 devices: Sequence[jax.Device] | None = None) -> Learner:
    """A learner for `network` (default: the Tempest network sized by `cfg.network`)."""
    return Learner(cfg.learner, cfg.network, network, obs_size, num_actions, action_groups,
                   devices)
