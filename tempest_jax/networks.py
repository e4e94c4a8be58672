"""The Tempest network (docs/learning.md): lane cross-attention encoder + dueling C51.

Sixteen lane tokens attend to seven enemy tokens (nearest first, empty slots masked out); the
pooled encoding is concatenated with the raw state, passed through a LayerNorm-ReLU trunk, and
dueling heads give per-action logits over the return atoms. Tokens are built from the named
slices of `features.LAYOUT`, so the network follows the feature contract, not index arithmetic.

Any Linen module mapping float32 observations (B, obs_size) to logits (B, num_actions,
num_atoms) can stand in for `TempestNetwork` in the learner.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax.config import NetworkConfig
from tempest_jax.features import (
    ENEMY_INFO_WIDTH,
    LAYOUT,
    NUM_ACTIONS,
    NUM_ENEMY_SLOTS,
    NUM_LANES,
    presence_masks,
)

LANE_TOKEN_SIZE = 5
ENEMY_TOKEN_SIZE = ENEMY_INFO_WIDTH + 8
# Sort key of empty enemy slots: beyond any normalised depth (<= 1), so they go last.
EMPTY_SLOT_DEPTH = 2.0
# The reference's LayerNorm epsilon (PyTorch default); Flax's default is 1e-6.
LAYER_NORM_EPS = 1e-5

_LANE_ANGLES = 2.0 * np.pi * np.arange(NUM_LANES) / NUM_LANES
_xavier = nn.initializers.xavier_uniform()


def _matmul(matmul_dtype: jnp.dtype | None):
    """lax.dot_general, or with `matmul_dtype` one that multiplies in that dtype and
    accumulates in float32 (the actors' bfloat16 inference)."""
    if matmul_dtype is None:
        return jax.lax.dot_general

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        return jax.lax.dot_general(lhs.astype(matmul_dtype), rhs.astype(matmul_dtype),
                                   dimension_numbers, precision=precision,
                                   preferred_element_type=jnp.float32)
    return dot_general


def _as_given(*arrays, dtype=None, inexact=True):
    """Dense's promotion step made a no-op: the matmul casts its operands itself, so a kernel
    stored in the matmul dtype is never widened first."""
    return arrays


def _dense(features: int, name: str, dtype: jnp.dtype, matmul_dtype: jnp.dtype | None
           ) -> nn.Dense:
    if matmul_dtype is None:
        return nn.Dense(features, kernel_init=_xavier, dtype=dtype, name=name)
    return nn.Dense(features, kernel_init=_xavier, dtype=dtype, name=name,
                    dot_general=_matmul(matmul_dtype), promote_dtype=_as_given)


def _field(obs: jax.Array, name: str) -> jax.Array:
    return obs[..., LAYOUT[name].slice]


def lane_tokens(obs: jax.Array) -> jax.Array:
    """(B, 16, 5): [spike, tube angle, player here, sin, cos of the lane's angle] per lane."""
    player_lane = jnp.clip(jnp.round(_field(obs, "player_position")[..., 0] * (NUM_LANES - 1)),
                           0, NUM_LANES - 1).astype(jnp.int32)
    player_here = jax.nn.one_hot(player_lane, NUM_LANES, dtype=obs.dtype)
    batch_shape = (*obs.shape[:-1], NUM_LANES)
    sin = jnp.broadcast_to(jnp.sin(_LANE_ANGLES).astype(obs.dtype), batch_shape)
    cos = jnp.broadcast_to(jnp.cos(_LANE_ANGLES).astype(obs.dtype), batch_shape)
    return jnp.stack([_field(obs, "spike"), _field(obs, "tube_angle"), player_here, sin, cos],
                     axis=-1)


def enemy_tokens(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, 7, 14) enemy tokens sorted nearest first with empty slots last, and the (B, 7) mask of
    slots attention may read. When every slot is empty the mask is all true: attending evenly to
    empty tokens keeps the softmax finite where masking all of them would divide by zero."""
    info = _field(obs, "enemy_info").reshape((*obs.shape[:-1], NUM_ENEMY_SLOTS, ENEMY_INFO_WIDTH))
    rel_lane = _field(obs, "enemy_rel_lane")
    depth = _field(obs, "enemy_depth")
    # Absolute lane of each enemy as a fraction of the tube, for its angle on the circle.
    lane_frac = jnp.mod(_field(obs, "player_position") * (NUM_LANES - 1)
                        + rel_lane * (NUM_LANES - 1), NUM_LANES) / NUM_LANES
    scalars = jnp.stack([rel_lane, depth, _field(obs, "enemy_top_rel_lane"),
                         _field(obs, "toprail_rel_lane"), _field(obs, "enemy_delta_lane"),
                         _field(obs, "enemy_delta_depth"), jnp.sin(2.0 * np.pi * lane_frac),
                         jnp.cos(2.0 * np.pi * lane_frac)], axis=-1)
    tokens = jnp.concatenate([info, scalars], axis=-1)
    present = presence_masks(obs)[0]
    order = jnp.argsort(jnp.where(present, depth, EMPTY_SLOT_DEPTH), axis=-1, stable=True)
    tokens = jnp.take_along_axis(tokens, order[..., None], axis=-2)
    present = jnp.take_along_axis(present, order, axis=-1)
    readable = present | ~jnp.any(present, axis=-1, keepdims=True)
    return tokens, readable


class LaneCrossAttention(nn.Module):
    """Lane tokens (queries) attend to enemy tokens (keys, values); mean-pooled over lanes."""

    dim: int
    heads: int
    dtype: jnp.dtype = jnp.float32
    matmul_dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, lanes: jax.Array, enemies: jax.Array, readable: jax.Array) -> jax.Array:
        dense = lambda name: _dense(self.dim, name, self.dtype, self.matmul_dtype)
        norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name=name)
        lane_emb = norm("lane_norm")(dense("lane_embed")(lanes))
        enemy_emb = norm("enemy_norm")(dense("enemy_embed")(enemies))
        # One packed q/k/v projection, initialised as the reference's packed in-projection
        # (Xavier over the whole dim x 3·dim matrix); queries come from lanes, keys and values
        # from enemies, so the matrix is applied in two column blocks.
        qkv_kernel = self.param("qkv_kernel", _xavier, (self.dim, 3 * self.dim))
        qkv_bias = self.param("qkv_bias", nn.initializers.zeros, (3 * self.dim,))
        if self.matmul_dtype is None:
            qkv_kernel = qkv_kernel.astype(self.dtype)  # else the matmul casts it
        qkv_bias = qkv_bias.astype(self.dtype)
        head_dim = self.dim // self.heads
        split = lambda x: x.reshape((*x.shape[:-1], self.heads, head_dim))
        matmul = _matmul(self.matmul_dtype)
        mat = lambda x, w: matmul(x, w, (((x.ndim - 1,), (0,)), ((), ())))
        q = split(mat(lane_emb, qkv_kernel[:, :self.dim]) + qkv_bias[:self.dim])
        kv = mat(enemy_emb, qkv_kernel[:, self.dim:]) + qkv_bias[self.dim:]
        k, v = split(kv[..., :self.dim]), split(kv[..., self.dim:])
        logits = jnp.einsum("blhd,behd->bhle", q, k) / np.sqrt(head_dim).astype(self.dtype)
        # A finite floor rather than -inf: a masked logit can never produce NaN.
        logits = jnp.where(readable[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
        attended = jnp.einsum("bhle,behd->blhd", jax.nn.softmax(logits, axis=-1), v)
        attended = dense("out_proj")(attended.reshape((*attended.shape[:-2], self.dim)))
        return jnp.mean(norm("residual_norm")(lane_emb + attended), axis=-2)


class TempestNetwork(nn.Module):
    """obs (B, 195) → logits (B, num_actions, num_atoms).

    `dtype` is the compute dtype. `matmul_dtype` (None: `dtype`) multiplies the matrices in
    that dtype with float32 accumulation and leaves the rest (norms, softmax, heads' sums) in
    `dtype`: the actors' bfloat16 inference, which reads matrices already stored in bfloat16
    (`Learner.inference_params`) and so moves half the weight bytes per forward pass."""

    num_actions: int = NUM_ACTIONS
    num_atoms: int = 51
    trunk_width: int = 384
    trunk_layers: int = 2
    attn_dim: int = 128
    attn_heads: int = 8
    head_hidden: int = 192
    dueling: bool = True
    dtype: jnp.dtype = jnp.float32
    matmul_dtype: jnp.dtype | None = None

    @classmethod
    def from_config(cls, cfg: NetworkConfig, num_actions: int = NUM_ACTIONS) -> TempestNetwork:
        return cls(num_actions=num_actions, num_atoms=cfg.num_atoms, trunk_width=cfg.trunk_width,
                   trunk_layers=cfg.trunk_layers, attn_dim=cfg.attn_dim,
                   attn_heads=cfg.attn_heads, head_hidden=cfg.head_hidden, dueling=cfg.dueling,
                   dtype=jnp.dtype(cfg.dtype))

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        dense = lambda n, name: _dense(n, name, self.dtype, self.matmul_dtype)
        tokens, readable = enemy_tokens(obs)
        encoded = LaneCrossAttention(self.attn_dim, self.attn_heads, self.dtype, self.matmul_dtype,
                                     name="encoder")(lane_tokens(obs), tokens, readable)
        h = jnp.concatenate([obs.astype(self.dtype), encoded], axis=-1)
        for i in range(self.trunk_layers):
            h = dense(self.trunk_width, f"trunk_{i}")(h)
            h = nn.relu(nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype,
                                     name=f"trunk_norm_{i}")(h))
        advantage = dense(self.head_hidden, "advantage_hidden")(h)
        advantage = dense(self.num_actions * self.num_atoms, "advantage")(nn.relu(advantage))
        advantage = advantage.reshape((*obs.shape[:-1], self.num_actions, self.num_atoms))
        if self.dueling:
            value = dense(self.num_atoms, "value")(nn.relu(dense(self.head_hidden,
                                                                 "value_hidden")(h)))
            logits = value[..., None, :] + advantage - jnp.mean(advantage, axis=-2,
                                                                 keepdims=True)
        else:
            logits = advantage
        return logits.astype(jnp.float32)


def cpu_has_amx_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this host's CPU has AMX-BF16 tiles. There XLA's bfloat16 matmuls run in about
    half the time of float32 ones (a Sapphire Rapids: 1.9x at 16 rows, 3.6x at 256)."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:  # not Linux
        return False


def param_count(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
