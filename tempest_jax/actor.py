"""Action selection for a batch of frames: expert ratio, ε-greedy, superzapper gate.

One pure function, `select_actions`, decides for every row (reference/actions.md §3, with our
fixes): with probability `expert_ratio` the expert's advice is executed exactly (and stored as
such); otherwise the network acts, taking a random action with probability ε, and a network
zap that the expert did not advise is cleared with the zap-gate probability. Both probabilities
come from the schedules of the global frame count (zoom: ε × 0.2, ratio × 2) unless an operator
override is set. The same function runs inside the simulator's jitted rollout and behind the
server's batched inference, so the two sources act identically.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import schedules
from tempest_jax.config import ScheduleConfig
from tempest_jax.learner import Learner, expected_q
from tempest_jax.protocol import FrameBatch
from tempest_jax.server import PolicyOutput

SPINNER_ZERO_INDEX = F.SPINNER_INDEX_OF_LEVEL[0]


class Overrides(NamedTuple):
    """Operator settings, passed as arrays so changing them never recompiles."""

    epsilon: Any = -1.0       # < 0: follow the schedule
    expert_ratio: Any = -1.0  # < 0: follow the schedule
    pulse: Any = False        # a manual pulse is running: ε is at least `eps_pulse`

    def as_arrays(self) -> Overrides:
        return Overrides(np.float32(self.epsilon), np.float32(self.expert_ratio),
                         np.bool_(self.pulse))


def select_actions(key: jax.Array, greedy: jax.Array, expert_joint: jax.Array,
                   expert_zap: jax.Array, gamestate: jax.Array, frames: jax.Array,
                   overrides: Overrides, cfg: ScheduleConfig) -> tuple[jax.Array, jax.Array]:
    """(joint actions, is_expert) for one batch; every argument but `key`, `frames`,
    `overrides` and `cfg` has one row per frame."""
    chex.assert_equal_shape([greedy, expert_joint, expert_zap, gamestate])
    n = greedy.shape[0]
    zoom = gamestate == F.GAMESTATE_ZOOM
    # Float32 frame counts lose integer precision past 16M frames; schedules do not need it,
    # and the pulse is decided on the host from exact counts.
    frames = jnp.asarray(frames, jnp.float32)
    pulse_until = jnp.where(overrides.pulse, jnp.inf, 0.0)
    ratio = jnp.where(overrides.expert_ratio >= 0, overrides.expert_ratio,
                      schedules.expert_ratio(frames, cfg, zoom=zoom))
    eps = jnp.where(overrides.epsilon >= 0, overrides.epsilon,
                    schedules.epsilon(frames, cfg, zoom=zoom, pulse_until=pulse_until))
    k_expert, k_explore, k_fire, k_zap, k_spin, k_gate = jax.random.split(key, 6)
    use_expert = jax.random.uniform(k_expert, (n,)) < ratio
    explore = jax.random.uniform(k_explore, (n,)) < eps
    random_joint = F.joint_index(
        jax.random.bernoulli(k_fire, 0.5, (n,)).astype(jnp.int32),
        jax.random.bernoulli(k_zap, cfg.eps_zap_prob, (n,)).astype(jnp.int32),
        jax.random.randint(k_spin, (n,), 0, F.NUM_SPINNER))
    network = jnp.where(explore, random_joint, greedy).astype(jnp.int32)
    fire, zap, spinner = F.decode_joint(network)
    gate_closed = jax.random.uniform(k_gate, (n,)) < schedules.zap_gate(frames, cfg)
    zap = jnp.where((zap == 1) & (expert_zap == 0) & gate_closed, 0, zap)
    network = F.joint_index(fire, zap, spinner)
    joint = jnp.where(use_expert, expert_joint, network).astype(jnp.int32)
    return joint, use_expert


class ParamStore:
    """The parameters inference uses. The learner publishes a new immutable pytree; readers
    take a reference, so a forward pass never sees torn weights."""

    def __init__(self, params: Any):
        self._params = params
        self._version = 0
        self._lock = threading.Lock()

    def publish(self, params: Any) -> None:
        with self._lock:
            self._params = params
            self._version += 1

    def get(self) -> tuple[Any, int]:
        with self._lock:
            return self._params, self._version


# Columns of the server's packed per-row input and scalar input (one host transfer each).
ROW_EXPERT_JOINT, ROW_EXPERT_ZAP, ROW_GAMESTATE = range(3)
SCALAR_FRAMES, SCALAR_EPSILON, SCALAR_EXPERT_RATIO, SCALAR_PULSE = range(4)
# The packed output: joint action in the low byte, is_expert above it.
IS_EXPERT_BIT = 8


def make_act_fn(learner: Learner, cfg: ScheduleConfig):
    """A jitted, device-parallel act(params, key, obs, rows, scalars) -> (next key, packed)
    over a batch whose size is a multiple of the learner's device count.

    Inputs are packed so one call costs three small host-to-device copies and one copy back:
    `rows` (B, 3) int32 holds the expert's joint action, its zap flag and the game state;
    `scalars` (4,) float32 the global frame count and the operator overrides. The PRNG key
    stays on the device between calls. `packed` is joint | is_expert << IS_EXPERT_BIT.
    """

    def act(params, key, obs, rows, scalars):
        key, act_key = jax.random.split(key)
        q = expected_q(learner.inference_network.apply(params, obs),
                       jnp.asarray(learner.support))
        greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
        overrides = Overrides(scalars[SCALAR_EPSILON], scalars[SCALAR_EXPERT_RATIO],
                              scalars[SCALAR_PULSE] > 0)
        joint, is_expert = select_actions(
            act_key, greedy, rows[:, ROW_EXPERT_JOINT], rows[:, ROW_EXPERT_ZAP],
            rows[:, ROW_GAMESTATE], scalars[SCALAR_FRAMES], overrides, cfg)
        return key, joint | (is_expert.astype(jnp.int32) << IS_EXPERT_BIT)

    # This process's devices only: serving never waits for another process.
    rows, replicated = learner.inference_rows, learner.inference_replicated
    return jax.jit(act, in_shardings=(replicated, replicated, rows, rows, replicated),
                   out_shardings=(replicated, rows), donate_argnums=(1,))


def bucket_size(n: int, multiple: int) -> int:
    """Padded batch size: the next power of two ≥ n, rounded up to `multiple`, so a server
    sees a handful of compiled shapes whatever its client count. Small batches stay small:
    at 1–4 clients the forward pass is most of a reply's latency."""
    size = 1 << (max(n, 1) - 1).bit_length()
    return -(-size // multiple) * multiple


class ServerPolicy:
    """The server's policy: batched, jitted, device-parallel inference with the schedules
    driven by the global frame count (every frame served counts). `overrides` is called once
    per batch for the operator's current settings."""

    def __init__(self, learner: Learner, params: ParamStore, cfg: ScheduleConfig,
                 seed: int = 0, frames: int = 0,
                 overrides: Callable[[], Overrides] = Overrides):
        self.learner = learner
        self.params = params
        self.cfg = cfg
        self.frames = frames
        self.overrides = overrides
        self._act = make_act_fn(learner, cfg)
        self._key = jax.device_put(jax.random.key(seed), learner.inference_replicated)
        self._row_multiple = math.lcm(learner.num_local_devices, learner.inference_min_rows)
        self._inputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per padded size

    def _buffers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Reused host input buffers for one padded size (safe to refill: the server waits
        for each batch's output before it starts the next)."""
        if size not in self._inputs:
            self._inputs[size] = (np.zeros((size, self.learner.obs_size), np.float32),
                                  np.zeros((size, 3), np.int32))
        return self._inputs[size]

    def compile_batches(self, max_rows: int) -> list[int]:
        """Compile (by running once, on zeros and a scratch key) the act call for every padded
        batch size a batch of 1..`max_rows` frames takes; the sizes, ascending."""
        sizes = sorted({bucket_size(n, self._row_multiple) for n in range(1, max_rows + 1)})
        params, _ = self.params.get()
        scalars = np.zeros(4, np.float32)
        for size in sizes:
            obs, rows = self._buffers(size)
            scratch_key = jax.device_put(jax.random.key(0), self.learner.inference_replicated)
            jax.block_until_ready(self._act(params, scratch_key, obs, rows, scalars))
        return sizes

    def start(self, client_ids: np.ndarray, batch: FrameBatch) -> Callable[[], PolicyOutput]:
        """Dispatch the batch's inference (it runs while the caller goes on); the returned
        function waits for the actions."""
        n = len(batch)
        obs, rows = self._buffers(bucket_size(n, self._row_multiple))
        obs[:n] = batch.state
        rows[:n, ROW_EXPERT_JOINT] = F.expert_joint_action(
            batch.expert_target, batch.player_seg, batch.is_open != 0, batch.expert_fire,
            batch.expert_zap)
        rows[:n, ROW_EXPERT_ZAP] = batch.expert_zap
        rows[:n, ROW_GAMESTATE] = batch.gamestate
        overrides = self.overrides()
        scalars = np.array([self.frames, overrides.epsilon, overrides.expert_ratio,
                            overrides.pulse], np.float32)
        params, _ = self.params.get()
        self._key, packed = self._act(params, self._key, obs, rows, scalars)
        self.frames += n

        def wait() -> PolicyOutput:
            actions = np.asarray(packed)[:n]
            return PolicyOutput(joint=actions & ((1 << IS_EXPERT_BIT) - 1),
                                is_expert=(actions >> IS_EXPERT_BIT).astype(bool))

        return wait

    def __call__(self, client_ids: np.ndarray, batch: FrameBatch) -> PolicyOutput:
        return self.start(client_ids, batch)()
