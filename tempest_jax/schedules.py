"""Schedules (docs/learning.md): pure functions of the global frame count or update step.

Every function works on Python numbers and numpy arrays (the actor, the trainer) and on JAX
arrays inside `jit` (the learner's learning rate), so the actor and the learner read one
definition. Frame-driven quantities ramp linearly from a start to an end value and then hold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax.config import LearnerConfig, ReplayConfig, ScheduleConfig


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def _ramp(frames, start: float, end: float, span: int, offset: int = 0):
    """`start` until `offset`, then linear to `end` over `span` frames, then `end`."""
    xp = _xp(frames)
    progress = xp.clip((frames - offset) / span, 0.0, 1.0)
    return start + progress * (end - start)


def epsilon(frames, cfg: ScheduleConfig, zoom=False, pulse_until=0):
    """Exploration rate. During zoom it is multiplied by `eps_zoom_mult`; while
    `frames < pulse_until` (a manual pulse, which ends at a global frame count, not after a number
    of schedule updates as in the original) it is at least `eps_pulse`."""
    xp = _xp(frames)
    eps = _ramp(frames, cfg.eps_start, cfg.eps_end, cfg.eps_frames)
    eps = xp.where(zoom, eps * cfg.eps_zoom_mult, eps)
    return xp.where(frames < pulse_until, xp.maximum(eps, cfg.eps_pulse), eps)


def expert_ratio(frames, cfg: ScheduleConfig, zoom=False):
    """Probability that the expert acts; doubled (`expert_zoom_mult`) during zoom, capped at 1."""
    xp = _xp(frames)
    ratio = _ramp(frames, cfg.expert_start, cfg.expert_end, cfg.expert_frames)
    return xp.where(zoom, xp.minimum(ratio * cfg.expert_zoom_mult, 1.0), ratio)


def per_beta(frames, cfg: ReplayConfig):
    """Importance-sampling exponent of prioritized replay."""
    return _ramp(frames, cfg.beta_start, cfg.beta_end, cfg.beta_frames)


def bc_weight(frames, cfg: ScheduleConfig):
    """Weight of the behavioural-cloning loss: `bc_weight_start` until `bc_decay_start`, then
    linear to `bc_weight_end` over `bc_decay_frames`."""
    return _ramp(frames, cfg.bc_weight_start, cfg.bc_weight_end, cfg.bc_decay_frames,
                 offset=cfg.bc_decay_start)


def zap_gate(frames, cfg: ScheduleConfig):
    """Superzapper gate: 1 at frame 0, closing linearly to 0 over `zap_gate_frames`."""
    return _ramp(frames, 1.0, 0.0, cfg.zap_gate_frames)


def learning_rate(step, cfg: LearnerConfig):
    """Linear warm-up to `lr` over `warmup_steps` updates (lr·(t+1)/warmup), then cosine decay
    from `lr` to `lr_min` with a warm restart every `cosine_period` updates. An optax schedule:
    a function of the update count."""
    xp = _xp(step)
    warm = cfg.lr * (step + 1) / max(cfg.warmup_steps, 1)
    phase = xp.mod(step - cfg.warmup_steps, cfg.cosine_period) / cfg.cosine_period
    cosine = cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + xp.cos(np.pi * phase))
    return xp.where(step < cfg.warmup_steps, warm, cosine)
