"""Inference and action selection: how the actors run the network and choose actions.

`Inference` is the actors' side of the network: this process's devices (a mesh of their own:
serving never waits for another process), the matrices multiplied in `learner.inference_dtype`,
batches padded to the device count, and `greedy`, the one greedy selection over expected Q that
the simulator rollout, the game server and evaluation all use.

One pure function, `select_actions`, decides for every row: with probability `expert_ratio` the
expert's advice is executed exactly (and stored as such); otherwise the network acts, taking a
random action with probability ε (fire a coin flip, zap with `eps_zap_prob`, a uniform spinner
level), and a network zap that the expert did not advise is cleared with the zap-gate
probability. Both probabilities come from the schedules of the global frame count (during the
zoom between levels: ε × `eps_zoom_mult`, ratio × `expert_zoom_mult`) unless an operator
override is set. The same function runs inside the simulator's jitted rollout and behind the
server's batched inference, so the two sources act identically.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tempest_jax import distributed, schedules
from tempest_jax import features as F
from tempest_jax.config import ScheduleConfig
from tempest_jax.learner import DATA_AXIS, Learner, expected_q
from tempest_jax.networks import cpu_has_amx_bf16
from tempest_jax.policy import PolicyOutput
from tempest_jax.protocol import FrameBatch

SPINNER_ZERO_INDEX = F.SPINNER_INDEX_OF_LEVEL[0]


class Overrides(NamedTuple):
    """Operator settings, passed as arrays so changing them never recompiles."""

    epsilon: Any = -1.0       # < 0: follow the schedule
    expert_ratio: Any = -1.0  # < 0: follow the schedule
    pulse: Any = False        # a manual pulse is running: ε is at least `eps_pulse`

    def as_arrays(self) -> Overrides:
        return Overrides(np.float32(self.epsilon), np.float32(self.expert_ratio),
                         np.bool_(self.pulse))


class Segments(NamedTuple):
    """Per stream (a simulator game, a client): the uniform draw in [0, 1) that decides who acts
    (the expert when it is below the expert ratio), and the frames left before the next draw.
    One actor plays a whole segment, so n-step returns, which end where the actor changes,
    span their full horizon instead of the one or two frames a per-frame draw leaves them."""

    draw: Any  # (S,) float32
    left: Any  # (S,) int32


def advance_segments(segments: Segments, fresh: Any, done: Any, length: int,
                     xp=jnp) -> tuple[Segments, Any]:
    """The segments after one frame of each row, and the draws that frame acts on. A row with
    no frames left takes its `fresh` draw for the next `length` frames; a life's end (`done`)
    ends the segment, so every life starts with a new draw. numpy (`xp=np`, the server, on the
    host) or jax (the simulator's rollout) alike."""
    new = segments.left <= 0
    draw = xp.where(new, fresh, segments.draw)
    left = xp.where(new, length, segments.left) - 1
    return Segments(draw, xp.where(done, 0, left)), draw


# Uniform draws `select_actions` takes per row: explore, fire, zap, spinner, zap gate.
ACTION_DRAWS = 5


def select_actions(draws: jax.Array, greedy: jax.Array, expert_joint: jax.Array,
                   expert_zap: jax.Array, gamestate: jax.Array, frames: jax.Array,
                   overrides: Overrides, cfg: ScheduleConfig,
                   expert_draw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(joint actions, is_expert) for one batch. `draws` (ACTION_DRAWS, n), uniforms in
    [0, 1), is all its randomness; `greedy`, `expert_joint`, `expert_zap`, `gamestate` and
    `expert_draw` have one row per frame; `frames` and the overrides are scalars or one per
    row. A row's expert acts when its segment's `expert_draw` is below the expert ratio."""
    chex.assert_equal_shape([greedy, expert_joint, expert_zap, gamestate, expert_draw])
    zoom = gamestate == F.GAMESTATE_ZOOM
    # Float32 frame counts lose integer precision past 16M frames; schedules do not need it,
    # and the pulse is decided on the host from exact counts.
    frames = jnp.asarray(frames, jnp.float32)
    pulse_until = jnp.where(overrides.pulse, jnp.inf, 0.0)
    ratio = jnp.where(overrides.expert_ratio >= 0, overrides.expert_ratio,
                      schedules.expert_ratio(frames, cfg, zoom=zoom))
    eps = jnp.where(overrides.epsilon >= 0, overrides.epsilon,
                    schedules.epsilon(frames, cfg, zoom=zoom, pulse_until=pulse_until))
    explore_u, fire_u, zap_u, spin_u, gate_u = draws
    use_expert = expert_draw < ratio
    explore = explore_u < eps
    random_joint = F.joint_index(
        (fire_u < 0.5).astype(jnp.int32), (zap_u < cfg.eps_zap_prob).astype(jnp.int32),
        jnp.minimum((spin_u * F.NUM_SPINNER).astype(jnp.int32), F.NUM_SPINNER - 1))
    network = jnp.where(explore, random_joint, greedy).astype(jnp.int32)
    fire, zap, spinner = F.decode_joint(network)
    gate_closed = gate_u < schedules.zap_gate(frames, cfg)
    zap = jnp.where((zap == 1) & (expert_zap == 0) & gate_closed, 0, zap)
    network = F.joint_index(fire, zap, spinner)
    joint = jnp.where(use_expert, expert_joint, network).astype(jnp.int32)
    return joint, use_expert


def greedy(apply: Callable, params: Any, obs: jax.Array, support: jax.Array) -> jax.Array:
    """(B,) int32 argmax over actions of the expected Q of `obs`: the greedy action."""
    return jnp.argmax(expected_q(apply(params, obs), support), axis=-1).astype(jnp.int32)


def resolve_inference_dtype(name: str, network: nn.Module, platform: str) -> jnp.dtype | None:
    """The matmul dtype of the actors' forward pass for `learner.inference_dtype`; None: the
    network's own. `auto` picks bfloat16 only where it was measured faster (CPUs with AMX-BF16;
    on GPU, XLA's float32 matmuls may already use TF32) and the network supports it."""
    supported = "matmul_dtype" in getattr(network, "__dataclass_fields__", {})
    if name == "float32" or (name == "auto" and not (
            supported and platform == "cpu" and cpu_has_amx_bf16())):
        return None
    if not supported:
        raise ValueError(f"learner.inference_dtype = {name} needs a network with a "
                         f"matmul_dtype field (TempestNetwork); {type(network).__name__} has "
                         "none: use float32 or auto")
    return jnp.dtype(jnp.bfloat16)


def stored_for_matmul(params: Any, dtype: jnp.dtype) -> Any:
    """Every matrix (the only leaves a matmul reads) in `dtype`; vectors stay float32."""
    return jax.tree.map(lambda x: x.astype(dtype) if x.ndim >= 2 else x, params)


class Inference:
    """The network as this process's actors run it.

    `dtype` is `learner.inference_dtype` (`auto`, `float32`, `bfloat16`): with bfloat16 every
    Dense layer multiplies bfloat16 matrices with float32 accumulation (norms, softmax and sums
    stay float32), from a bfloat16 copy of the matrices made at each publish (`params`).
    Evaluation uses `Inference(learner, "float32")`, the learner's own numerics.
    """

    def __init__(self, learner: Learner, dtype: str):
        self.support = jnp.asarray(learner.support)
        self.obs_size = learner.obs_size
        self.devices = learner.local_devices
        self.num_devices = len(self.devices)
        self.multi_process = learner.multi_process
        mesh = (jax.make_mesh((self.num_devices,), (DATA_AXIS,),
                              axis_types=(jax.sharding.AxisType.Auto,), devices=self.devices)
                if self.multi_process else learner.mesh)
        self.replicated = NamedSharding(mesh, P())
        self.rows = NamedSharding(mesh, P(DATA_AXIS))
        self.dtype = resolve_inference_dtype(dtype, learner.network, self.devices[0].platform)
        self.network = (learner.network if self.dtype is None
                        else learner.network.clone(matmul_dtype=self.dtype))
        self.dtype_name = jnp.dtype(
            self.dtype or getattr(learner.network, "dtype", jnp.float32)).name
        # XLA's bfloat16 matmul of one row takes 2.2x as long as of two (CPU, measured):
        # inference batches get at least two rows.
        self.min_rows = 1 if self.dtype is None else 2
        # Padded batch sizes are multiples of this.
        self.row_multiple = math.lcm(self.num_devices, self.min_rows)
        self._store = jax.jit(lambda params: stored_for_matmul(params, self.dtype),
                              in_shardings=self.replicated, out_shardings=self.replicated)
        self._q_values = jax.jit(
            lambda params, obs: expected_q(self.network.apply(params, obs.astype(jnp.float32)),
                                           self.support),
            in_shardings=(self.replicated, self.rows), out_shardings=self.rows)
        self._greedy = jax.jit(
            lambda params, obs: greedy(self.network.apply, params, obs.astype(jnp.float32),
                                       self.support),
            in_shardings=(self.replicated, self.rows), out_shardings=self.rows)

    def params(self, params: Any) -> Any:
        """The learner's `params` as this network reads them: on this process's devices only
        (inference must not wait for the other processes), matrices in `dtype`. New arrays
        whenever anything changes, so the learner's own `params` are never aliased."""
        if self.multi_process:
            params = distributed.local_copy(params, self.replicated)
        if self.dtype is not None:
            params = self._store(params)
        return params

    def q_values(self, params: Any, obs) -> jax.Array:
        """(B, A) expected Q-values of observations (B, obs_size), any float dtype."""
        obs, size = self._pad_rows(obs)
        return self._q_values(params, obs)[:size]

    def greedy_actions(self, params: Any, obs) -> jax.Array:
        """(B,) int32 greedy actions."""
        obs, size = self._pad_rows(obs)
        return self._greedy(params, obs)[:size]

    def _pad_rows(self, obs):
        """Pad the rows to a multiple of the device count (inference batches have any size)."""
        chex.assert_rank(obs, 2)
        size = obs.shape[0]
        short = -size % self.num_devices
        if short:
            xp = jnp if isinstance(obs, jax.Array) else np
            obs = xp.concatenate([obs, xp.zeros((short, obs.shape[1]), obs.dtype)])
        return obs, size


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


# The act call's one input per padded batch, (B, obs_size + ACT_COLUMNS) float32. Each row is
# the frame's observation, then its header fields `ACT_ROW_FIELDS` and its client's id (small
# integers, exact in float32), then the batch's scalars `ACT_SCALARS`, the same in every row so
# that a row stands alone wherever the rows are split across devices.
ACT_ROW_FIELDS = ("expert_target", "player_seg", "is_open", "expert_fire", "expert_zap",
                  "gamestate", "done")
ACT_SCALARS = ("frames", "epsilon", "expert_ratio", "pulse")
ACT_COLUMNS = len(ACT_ROW_FIELDS) + 1 + len(ACT_SCALARS)
# The output's columns, (B, 2) uint8: the joint action and whether the expert chose it.
OUT_JOINT, OUT_IS_EXPERT = range(2)


class ActState(NamedTuple):
    """What the act call carries from one call to the next, on the device."""

    rng: Any  # (4,) uint32: the state of XLA's counter-based generator
    segments: Segments  # (max_clients,) each: every client id's segment


def uniform_from_bits(bits: jax.Array) -> jax.Array:
    """Uniform float32 in [0, 1) from uint32 random bits (their top 23 as the mantissa)."""
    one_to_two = jax.lax.bitcast_convert_type((bits >> 9) | np.uint32(0x3F800000), jnp.float32)
    return one_to_two - 1.0


def make_act_fn(inference: Inference, cfg: ScheduleConfig):
    """A jitted, device-parallel act(params, act state, inputs) -> (next act state, packed)
    over a batch whose size is a multiple of `inference.row_multiple`.

    One host-to-device copy in and one back per call: `inputs` is the packed float32 batch
    described at `ACT_ROW_FIELDS` (the expert's advice becomes its joint action here, not on
    the host); `packed` (B, 2) uint8 holds the columns OUT_JOINT and OUT_IS_EXPERT, which the
    host reads as views, computing nothing. All randomness comes
    from one `rng_bit_generator` call (a single kernel, where threefry key splits and draws
    are many small ones); the `ActState` stays on the device between calls. A row whose client
    id is out of the segments' range (padding) changes no segment.
    """
    obs_size = inference.obs_size
    scalars_at = obs_size + len(ACT_ROW_FIELDS) + 1

    def act(params, state: ActState, inputs):
        obs = inputs[:, :obs_size]
        fields = inputs[:, obs_size:scalars_at].astype(jnp.int32)
        target, player, is_open, expert_fire, expert_zap, gamestate, done, client = fields.T
        frames, epsilon, expert_ratio, pulse = inputs[:, scalars_at:].T
        rng, bits = jax.lax.rng_bit_generator(state.rng, (1 + ACTION_DRAWS, inputs.shape[0]),
                                              dtype=jnp.uint32)
        draws = uniform_from_bits(bits)
        mine = Segments(*(whole.at[client].get(mode="clip") for whole in state.segments))
        mine, expert_draw = advance_segments(mine, draws[0], done != 0,
                                             cfg.expert_segment_frames)
        segments = Segments(*(whole.at[client].set(part, mode="drop")
                              for whole, part in zip(state.segments, mine, strict=True)))
        expert_joint = F.expert_joint_action(target, player, is_open != 0, expert_fire,
                                             expert_zap, xp=jnp)
        joint, is_expert = select_actions(
            draws[1:], greedy(inference.network.apply, params, obs, inference.support),
            expert_joint, expert_zap, gamestate, frames,
            Overrides(epsilon, expert_ratio, pulse > 0), cfg, expert_draw)
        return ActState(rng, segments), jnp.stack([joint, is_expert], axis=1).astype(jnp.uint8)

    rows, replicated = inference.rows, inference.replicated
    return jax.jit(act, in_shardings=(replicated, replicated, rows),
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
    per batch for the operator's current settings. Each client id (below `max_clients`) keeps
    its actor for a segment of `cfg.expert_segment_frames` frames (`Segments`, kept on the
    device; a new client that takes a departed one's id finishes that segment)."""

    def __init__(self, inference: Inference, params: ParamStore, cfg: ScheduleConfig,
                 key: jax.Array, max_clients: int, frames: int = 0,
                 overrides: Callable[[], Overrides] = Overrides):
        self.inference = inference
        self.params = params
        self.cfg = cfg
        self.max_clients = max_clients
        self.frames = frames
        self.overrides = overrides
        self._act = make_act_fn(inference, cfg)
        self._state = self._initial_state(key)
        self._inputs: dict[int, np.ndarray] = {}  # per padded size
        obs_size = inference.obs_size
        self._client_column = obs_size + len(ACT_ROW_FIELDS)
        self._row_columns = tuple(enumerate(ACT_ROW_FIELDS, obs_size))

    def _initial_state(self, key: jax.Array) -> ActState:
        """A generator state from `key` and no segment started (each client's first frame
        draws)."""
        state = ActState(jax.random.bits(key, (4,), jnp.uint32),
                         Segments(np.zeros(self.max_clients, np.float32),
                                  np.zeros(self.max_clients, np.int32)))
        return jax.device_put(state, self.inference.replicated)

    def _buffer(self, size: int) -> np.ndarray:
        """The reused host input of one padded size (safe to refill: the server waits for each
        batch's output before it starts the next)."""
        if size not in self._inputs:
            self._inputs[size] = np.zeros((size, self.inference.obs_size + ACT_COLUMNS),
                                          np.float32)
        return self._inputs[size]

    def compile_batches(self, max_rows: int) -> list[int]:
        """Compile (by running once, on padding rows and a scratch state) the act call for
        every padded batch size a batch of 1..`max_rows` frames takes; the sizes, ascending."""
        multiple = self.inference.row_multiple
        sizes = sorted({bucket_size(n, multiple) for n in range(1, max_rows + 1)})
        params, _ = self.params.get()
        for size in sizes:
            inputs = self._buffer(size)
            inputs[:, self._client_column] = self.max_clients
            scratch = self._initial_state(jax.random.key(0))
            jax.block_until_ready(self._act(params, scratch, inputs))
        return sizes

    def start(self, client_ids: np.ndarray, batch: FrameBatch) -> Callable[[], PolicyOutput]:
        """Dispatch the batch's inference; the returned function waits for the actions. (On a
        CPU, XLA may run much of the call before the dispatch returns.) Client ids are below
        `max_clients`, as the server's are by construction: this path is the act call's host
        overhead, so nothing is checked here that the caller guarantees. A row with a larger id
        acts, but as padding does: it keeps no segment."""
        n = len(batch)
        inputs = self._buffer(bucket_size(n, self.inference.row_multiple))
        inputs[:n, :self.inference.obs_size] = batch.state
        header = batch.header
        for column, name in self._row_columns:
            inputs[:n, column] = header[name]
        inputs[:n, self._client_column] = client_ids
        if n < len(inputs):
            inputs[n:, self._client_column] = self.max_clients  # padding: no client's segment
        overrides = self.overrides()
        inputs[:, self._client_column + 1:] = (self.frames, overrides.epsilon,
                                               overrides.expert_ratio, overrides.pulse)
        params, _ = self.params.get()
        self._state, packed = self._act(params, self._state, inputs)
        self.frames += n

        def wait() -> PolicyOutput:
            out = np.asarray(packed)
            return PolicyOutput(joint=out[:n, OUT_JOINT],
                                is_expert=out[:n, OUT_IS_EXPERT].view(bool))

        return wait

    def __call__(self, client_ids: np.ndarray, batch: FrameBatch) -> PolicyOutput:
        return self.start(client_ids, batch)()
