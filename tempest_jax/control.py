"""Operator controls of a training run: the one API behind the keyboard and the dashboard.

The keyboard and dashboard threads call these methods; the run's main loop and learner thread
read the results. Every change is one reference assignment (a new overrides tuple, a float, an
int) made under a lock, so a reader never sees half of a change. The main loop hands the
settings that belong to the frame source to it once per pass (`apply_to_source`), so the
simulator's state is only ever touched by the thread that owns it.

Operator settings live for the process: a resumed run starts from the config again (the pulse's
end frame is the exception: it is a checkpoint counter).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tempest_jax import schedules
from tempest_jax.protocol import START_LEVEL_MAX, START_LEVEL_MIN

if TYPE_CHECKING:
    from tempest_jax.train import Trainer

# The scaled peak learning rate stays within these bounds (the reference's L/l keys).
LR_BOUNDS = (1e-6, 1e-2)
SIM_START_LEVELS = (1, 99)
SETTINGS = ("epsilon", "expert_ratio", "pulse", "training", "lr_scale", "start_level",
            "start_advanced")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _probability(name: str, value: Any) -> float:
    """An override in [0, 1], or -1 (follow the schedule) for None."""
    if value is None:
        return -1.0
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] or null (the schedule), "
                         f"got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


class Controls:
    """The operator's handles on one `Trainer`."""

    def __init__(self, trainer: Trainer):
        self._trainer = trainer
        cfg = trainer.cfg
        self._lock = threading.RLock()
        self.sim = cfg.env.source == "sim"
        self.lr_scale = 1.0
        self.start_level = cfg.env.start_level if self.sim else cfg.server.start_level_min
        self.start_advanced = bool(cfg.server.start_advanced)
        self.verbose = False
        self.save_requested = threading.Event()

    # -- exploration ----------------------------------------------------------------------------

    def effective_epsilon(self) -> float:
        t = self._trainer
        if t.overrides.epsilon >= 0:
            return float(t.overrides.epsilon)
        return float(schedules.epsilon(t.frames, t.cfg.schedule, pulse_until=t.pulse_until))

    def effective_expert_ratio(self) -> float:
        t = self._trainer
        if t.overrides.expert_ratio >= 0:
            return float(t.overrides.expert_ratio)
        return float(schedules.expert_ratio(t.frames, t.cfg.schedule))

    def set_epsilon(self, value: float | None) -> None:
        """Fix ε at `value` in [0, 1]; None follows the schedule again."""
        epsilon = _probability("epsilon", value)
        with self._lock:
            self._trainer.overrides = self._trainer.overrides._replace(epsilon=epsilon)

    def set_expert_ratio(self, value: float | None) -> None:
        """Fix the expert ratio at `value` in [0, 1]; None follows the schedule again."""
        ratio = _probability("expert_ratio", value)
        with self._lock:
            self._trainer.overrides = self._trainer.overrides._replace(expert_ratio=ratio)

    def set_pulse(self, on: bool) -> None:
        """Start a manual ε pulse (ε ≥ `eps_pulse` for `eps_pulse_frames` frames) or end it."""
        t = self._trainer
        on = _flag("pulse", on)
        with self._lock:
            t.pulse_until = t.frames + t.cfg.schedule.eps_pulse_frames if on else t.frames

    def pulsing(self) -> bool:
        return self._trainer.frames < self._trainer.pulse_until

    def toggle_pulse(self) -> bool:
        with self._lock:
            self.set_pulse(not self.pulsing())
            return self.pulsing()

    # -- learning -------------------------------------------------------------------------------

    def set_training(self, on: bool) -> None:
        """Pause or resume the learner (frames keep flowing into replay)."""
        if _flag("training", on):
            self._trainer.training_enabled.set()
        else:
            self._trainer.training_enabled.clear()

    def toggle_training(self) -> bool:
        with self._lock:
            self.set_training(not self._trainer.training_enabled.is_set())
            return self._trainer.training_enabled.is_set()

    def lr_scale_bounds(self) -> tuple[float, float]:
        peak = self._trainer.cfg.learner.lr
        return LR_BOUNDS[0] / peak, LR_BOUNDS[1] / peak

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the scheduled learning rate by `scale` from the next dispatch on."""
        lo, hi = self.lr_scale_bounds()
        if not _is_number(scale) or not lo <= scale <= hi:
            raise ValueError(f"lr_scale must be a number in [{lo:.3g}, {hi:.3g}] (a peak "
                             f"learning rate in [{LR_BOUNDS[0]:g}, {LR_BOUNDS[1]:g}]), "
                             f"got {scale!r}")
        with self._lock:
            self.lr_scale = float(scale)

    def scale_lr(self, factor: float) -> float:
        """Multiply the learning-rate scale by `factor`, kept within the bounds; the new scale."""
        lo, hi = self.lr_scale_bounds()
        with self._lock:
            self.lr_scale = min(max(self.lr_scale * factor, lo), hi)
            return self.lr_scale

    # -- checkpoints and the terminal ------------------------------------------------------------

    def request_save(self) -> None:
        """Checkpoint at the main loop's next pass."""
        self.save_requested.set()

    def quit(self) -> None:
        """End the run; it saves a final checkpoint on the way out."""
        self._trainer.stop()

    def toggle_verbose(self) -> bool:
        with self._lock:
            self.verbose = not self.verbose
            return self.verbose

    # -- new games ------------------------------------------------------------------------------

    def start_level_range(self) -> tuple[int, int]:
        return SIM_START_LEVELS if self.sim else (START_LEVEL_MIN, START_LEVEL_MAX)

    def set_start_level(self, level: int) -> None:
        """The 1-based level new games start on. Simulator: every game picks it up at its next
        new game. MAME clients: reply byte 4 (`start_level_min`), which the Lua script applies
        when it starts a game."""
        lo, hi = self.start_level_range()
        if not (_is_number(level) and float(level).is_integer() and lo <= level <= hi):
            raise ValueError(f"start_level must be an integer in [{lo}, {hi}], got {level!r}")
        with self._lock:
            self.start_level = int(level)

    def set_start_advanced(self, on: bool) -> None:
        """Reply byte 3 for MAME clients: start on the highest level the game offers."""
        if self.sim:
            raise ValueError("start_advanced applies to MAME clients only (env.source=mame)")
        with self._lock:
            self.start_advanced = _flag("start_advanced", on)

    def apply_to_source(self) -> None:
        """Hand the settings to the frame source; called by the main loop, which owns it."""
        t = self._trainer
        if self.sim:
            if t.source is not None:
                t.source.set_start_level(self.start_level)
        elif t.server is not None:  # the server policy reads the overrides itself
            t.server.settings.start_level_min = self.start_level
            t.server.settings.start_advanced = int(self.start_advanced)

    # -- the dashboard --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The operator settings, as the metrics records and the dashboard show them."""
        overrides = self._trainer.overrides
        state = {
            "epsilon_override": float(overrides.epsilon) if overrides.epsilon >= 0 else None,
            "expert_ratio_override": (float(overrides.expert_ratio)
                                      if overrides.expert_ratio >= 0 else None),
            "pulse": self.pulsing(), "training": self._trainer.training_enabled.is_set(),
            "lr_scale": self.lr_scale, "start_level": self.start_level,
        }
        if not self.sim:
            state["start_advanced"] = self.start_advanced
        return state

    def apply_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Apply a dashboard POST: every value is checked before any is applied (ValueError
        names the bad one). Returns the new `state()`."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {list(SETTINGS)}")
        setters = {"epsilon": self.set_epsilon, "expert_ratio": self.set_expert_ratio,
                   "pulse": self.set_pulse, "training": self.set_training,
                   "lr_scale": self.set_lr_scale, "start_level": self.set_start_level,
                   "start_advanced": self.set_start_advanced}
        with self._lock:
            saved = self._snapshot()
            try:
                for name, value in settings.items():
                    setters[name](value)
            except ValueError:
                self._restore(saved)
                raise
        return self.state()

    def _snapshot(self) -> tuple:
        t = self._trainer
        return (t.overrides, t.pulse_until, t.training_enabled.is_set(), self.lr_scale,
                self.start_level, self.start_advanced)

    def _restore(self, saved: tuple) -> None:
        t = self._trainer
        (t.overrides, t.pulse_until, training, self.lr_scale, self.start_level,
         self.start_advanced) = saved
        self.set_training(training)
