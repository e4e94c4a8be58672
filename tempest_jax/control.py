"""Operator settings of a training run, and the one API that changes them.

`OperatorSettings` is the whole state an operator changes while a run goes on: ε and expert
ratio overrides, the manual ε pulse, training on/off, the learning-rate scale and the level new
games start on. It is immutable: every change replaces it whole under a lock, so a reader (the
learner thread, a frame source, the metrics) takes `controls.settings` once and never sees half
of a change. The keyboard and the dashboard change it through `Controls`; nothing here knows
the run that reads it. Saving and quitting are requests the run's main loop answers.

Operator settings live for the process: a resumed run starts from the config again (the pulse's
end frame is the exception: it is a checkpoint counter).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from tempest_jax import schedules
from tempest_jax.actor import Overrides
from tempest_jax.config import Config, ScheduleConfig
from tempest_jax.protocol import START_LEVEL_MAX, START_LEVEL_MIN

# The scaled peak learning rate stays within these bounds (keys L/l, the dashboard).
LR_BOUNDS = (1e-6, 1e-2)
SIM_START_LEVELS = (1, 99)
SETTINGS = ("epsilon", "expert_ratio", "pulse", "training", "lr_scale", "start_level",
            "start_advanced")


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    epsilon: float | None = None       # None: the schedule
    expert_ratio: float | None = None  # None: the schedule
    pulse_until: int = 0               # frame count at which a manual ε pulse ends
    training: bool = True              # the learner updates (frames flow into replay anyway)
    lr_scale: float = 1.0              # multiplies the scheduled learning rate
    start_level: int = 1               # 1-based level new games start on
    start_advanced: bool = False       # MAME: start on the highest level the game offers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _probability(name: str, value: Any) -> float | None:
    if value is not None and (not _is_number(value) or not 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1] or null (the schedule), "
                         f"got {value!r}")
    return None if value is None else float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


class Controls:
    """The operator's handles on a run. `frames()` is the run's frame count (the schedules' and
    the pulse's clock); `sim`: the frame source is the simulator (start levels 1–99, no
    `start_advanced`) rather than served MAME clients (1–81)."""

    @classmethod
    def for_run(cls, cfg: Config, frames: Callable[[], int], pulse_until: int) -> Controls:
        """The controls of a run of `cfg`. Games the simulator starts directly take any level
        1-99; simulated cabinets, like MAME clients, take the server's start settings (levels
        1-81 and start_advanced, which cabinets leave off at first)."""
        sim = cfg.env.source == "sim"
        cabinet = sim and cfg.env.cabinet
        return cls(cfg.schedule, cfg.learner.lr, frames, sim and not cabinet,
                   cfg.games_start_level,
                   bool(cfg.server.start_advanced) and not cabinet, pulse_until)

    def __init__(self, schedule: ScheduleConfig, lr_peak: float, frames: Callable[[], int],
                 sim: bool, start_level: int, start_advanced: bool = False,
                 pulse_until: int = 0):
        self.schedule = schedule
        self.lr_peak = lr_peak
        self.frames = frames
        self.sim = sim
        self.settings = OperatorSettings(pulse_until=pulse_until, start_level=start_level,
                                         start_advanced=start_advanced)
        self.verbose = False
        self.save_requested = threading.Event()
        self.quit_requested = threading.Event()
        self._lock = threading.RLock()

    def _change(self, **changes) -> OperatorSettings:
        with self._lock:
            self.settings = dataclasses.replace(self.settings, **changes)
            return self.settings

    # -- what the run reads ---------------------------------------------------------------------

    def overrides(self) -> Overrides:
        """The operator's overrides as the actors take them (-1: follow the schedule)."""
        s = self.settings
        return Overrides(-1.0 if s.epsilon is None else s.epsilon,
                         -1.0 if s.expert_ratio is None else s.expert_ratio,
                         self.frames() < s.pulse_until)

    def effective_epsilon(self) -> float:
        s = self.settings
        if s.epsilon is not None:
            return s.epsilon
        return float(schedules.epsilon(self.frames(), self.schedule, pulse_until=s.pulse_until))

    def effective_expert_ratio(self) -> float:
        s = self.settings
        if s.expert_ratio is not None:
            return s.expert_ratio
        return float(schedules.expert_ratio(self.frames(), self.schedule))

    def pulsing(self) -> bool:
        return self.frames() < self.settings.pulse_until

    # -- exploration ----------------------------------------------------------------------------

    def set_epsilon(self, value: float | None) -> None:
        """Fix ε at `value` in [0, 1]; None follows the schedule again."""
        self._change(epsilon=_probability("epsilon", value))

    def set_expert_ratio(self, value: float | None) -> None:
        """Fix the expert ratio at `value` in [0, 1]; None follows the schedule again."""
        self._change(expert_ratio=_probability("expert_ratio", value))

    def set_pulse(self, on: bool) -> None:
        """Start a manual ε pulse (ε ≥ `eps_pulse` for `eps_pulse_frames` frames) or end it."""
        frames = self.frames()
        end = frames + self.schedule.eps_pulse_frames if _flag("pulse", on) else frames
        self._change(pulse_until=end)

    def toggle_pulse(self) -> bool:
        with self._lock:
            self.set_pulse(not self.pulsing())
            return self.pulsing()

    # -- learning -------------------------------------------------------------------------------

    def set_training(self, on: bool) -> None:
        """Pause or resume the learner (frames keep flowing into replay)."""
        self._change(training=_flag("training", on))

    def toggle_training(self) -> bool:
        with self._lock:
            return self._change(training=not self.settings.training).training

    def lr_scale_bounds(self) -> tuple[float, float]:
        return LR_BOUNDS[0] / self.lr_peak, LR_BOUNDS[1] / self.lr_peak

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the scheduled learning rate by `scale` from the next dispatch on."""
        lo, hi = self.lr_scale_bounds()
        if not _is_number(scale) or not lo <= scale <= hi:
            raise ValueError(f"lr_scale must be a number in [{lo:.3g}, {hi:.3g}] (a peak "
                             f"learning rate in [{LR_BOUNDS[0]:g}, {LR_BOUNDS[1]:g}]), "
                             f"got {scale!r}")
        self._change(lr_scale=float(scale))

    def scale_lr(self, factor: float) -> float:
        """Multiply the learning-rate scale by `factor`, kept within the bounds; the new scale."""
        lo, hi = self.lr_scale_bounds()
        with self._lock:
            return self._change(lr_scale=min(max(self.settings.lr_scale * factor, lo), hi)
                                ).lr_scale

    # -- checkpoints and the terminal ------------------------------------------------------------

    def request_save(self) -> None:
        """Checkpoint at the main loop's next pass."""
        self.save_requested.set()

    def quit(self) -> None:
        """End the run at the main loop's next pass; it saves a final checkpoint first."""
        self.quit_requested.set()

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
        self._change(start_level=int(level))

    def set_start_advanced(self, on: bool) -> None:
        """Reply byte 3 for MAME clients: start on the highest level the game offers."""
        if self.sim:
            raise ValueError("start_advanced applies to MAME clients only (env.source=mame)")
        self._change(start_advanced=_flag("start_advanced", on))

    # -- the dashboard --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The operator settings, as the metrics records and the dashboard show them."""
        s = self.settings
        state = {"epsilon_override": s.epsilon, "expert_ratio_override": s.expert_ratio,
                 "pulse": self.pulsing(), "training": s.training, "lr_scale": s.lr_scale,
                 "start_level": s.start_level}
        if not self.sim:
            state["start_advanced"] = s.start_advanced
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
            saved = self.settings
            try:
                for name, value in settings.items():
                    setters[name](value)
            except ValueError:
                self.settings = saved
                raise
        return self.state()
