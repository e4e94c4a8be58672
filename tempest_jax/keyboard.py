"""Terminal keyboard controls of a training run.

Active only when stdin is a terminal (and, when it is this process's controlling terminal, while
the process is in the foreground), unless turned off (`tempest-jax train --no-keys`). The
terminal goes to cbreak mode (keys arrive one at a time and unechoed; Ctrl-C still interrupts)
and a daemon thread reads it. Leaving the `with` block restores the terminal, whether the run
ended normally, by an exception, or by a signal that stops it. Every key acts through the run's
`Controls`, the same API the dashboard uses, and prints what it did on its own line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from typing import TextIO

from tempest_jax.control import Controls
from tempest_jax.metrics import format_row, header_row, print_lines
from tempest_jax.supervisor import Supervisor

log = logging.getLogger(__name__)

KEYS = (
    ("q", "quit: save a checkpoint and exit"),
    ("s", "save a checkpoint now"),
    ("t", "pause / resume training (frames keep flowing into replay)"),
    ("e / E", "ε override down / up (1-point steps below 10%, else 5)"),
    ("x / X", "expert ratio override down / up (same steps)"),
    ("a", "ε and expert ratio back to their schedules"),
    ("p", "start / cancel a manual ε pulse"),
    ("L / l", "learning rate ×2 / ×½ (peak kept within [1e-6, 1e-2])"),
    ("v", "verbose: a learner line after each metrics row"),
    ("h", "print the header row"),
    ("space", "print a metrics row now"),
    ("r", "replay statistics"),
    ("?", "this list"),
)
SMALL_STEP, LARGE_STEP, LARGE_FROM = 0.01, 0.05, 0.10


def step_probability(value: float, up: bool) -> float:
    """One keyboard step of ε or the expert ratio: 1 point below 10%, 5 points from there,
    within [0, 1]."""
    large = value >= LARGE_FROM - 1e-9 if up else value > LARGE_FROM + 1e-9
    step = LARGE_STEP if large else SMALL_STEP
    return round(min(max(value + (step if up else -step), 0.0), 1.0), 4)


def key_list() -> str:
    width = max(len(key) for key, _ in KEYS)
    return "\n".join(f"  {key.ljust(width)}  {action}" for key, action in KEYS)


def replay_line(stats: dict) -> str:
    """The `r` line, from the replay's statistics (`ReplayBuffer.stats` with the limiter's
    `samples_per_transition`)."""
    size, capacity = stats["size"], stats["capacity"]
    return (f"replay: {size:,} / {capacity:,} transitions ({100 * size / capacity:.1f}% full), "
            f"expert {100 * stats['expert_fraction']:.1f}%, priority mean "
            f"{stats['mean_priority']:.3g} max {stats['max_priority']:.3g}, added "
            f"{stats['added']:,}, stale drops {stats['dropped_stale']:,}, samples per "
            f"transition {stats['samples_per_transition']:.2f}")


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%" if value >= LARGE_FROM else f"{100 * value:.1f}%"


class KeyboardControls:
    """`with KeyboardControls(controls, status, supervisor): trainer.run()`; inactive where
    stdin is no terminal. Keys act through `controls`; `status()` is read-only: the run's latest
    metrics record (`"record"`) and replay statistics (`"replay"`)."""

    def __init__(self, controls: Controls, status: Callable[[], dict], supervisor: Supervisor,
                 enabled: bool = True, stdin: TextIO | None = None, out: TextIO | None = None):
        self.controls = controls
        self.status = status
        self.supervisor = supervisor
        self.stdin = stdin if stdin is not None else sys.stdin
        self.out = out if out is not None else sys.stdout
        self.active = enabled and _usable_terminal(self.stdin)
        self._saved_mode: list | None = None
        self._stop = threading.Event()
        self._watch = None

    def handle(self, key: str) -> str | None:
        """Act on one key; the line that says what it did (None for keys that print nothing)."""
        c = self.controls
        if key == "q":
            c.quit()
            return "q: quitting (a final checkpoint is saved first)"
        if key == "s":
            c.request_save()
            return "s: checkpoint requested"
        if key == "t":
            return "t: training " + ("resumed" if c.toggle_training() else "paused")
        if key in ("e", "E"):
            value = step_probability(c.effective_epsilon(), up=key == "E")
            c.set_epsilon(value)
            return f"{key}: ε fixed at {_percent(value)} (a: back to the schedule)"
        if key in ("x", "X"):
            value = step_probability(c.effective_expert_ratio(), up=key == "X")
            c.set_expert_ratio(value)
            return f"{key}: expert ratio fixed at {_percent(value)} (a: back to the schedule)"
        if key == "a":
            c.set_epsilon(None)
            c.set_expert_ratio(None)
            return "a: ε and expert ratio follow their schedules"
        if key == "p":
            return "p: ε pulse " + ("started" if c.toggle_pulse() else "cancelled")
        if key in ("L", "l"):
            scale = c.scale_lr(2.0 if key == "L" else 0.5)
            peak = c.lr_peak * scale
            return f"{key}: learning rate ×{scale:g} (peak {peak:.2e})"
        if key == "v":
            return "v: verbose " + ("on" if c.toggle_verbose() else "off")
        if key == "h":
            return header_row()
        if key == " ":
            latest = self.status()["record"]
            return format_row(latest) if latest else "(no metrics row yet)"
        if key == "r":
            return replay_line(self.status()["replay"])
        if key == "?":
            return "keys:\n" + key_list()
        if key.isprintable():
            return f"{key!r}: not a key (? lists them)"
        return None

    def __enter__(self) -> KeyboardControls:
        if not self.active:
            return self
        fd = self.stdin.fileno()
        self._saved_mode = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._watch = self.supervisor.watch("keyboard")
        self._watch.start(functools.partial(self._read, fd))
        self._print("keys: q quit, s save, t training, e/E ε, x/X expert, a schedules, "
                    "p pulse, L/l lr, v verbose, h header, space row, r replay, ? help")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=1)
        if self._saved_mode is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved_mode)
            self._saved_mode = None

    def _read(self, fd: int) -> None:
        while not self._stop.is_set():
            self._watch.beat()
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 64)
            if not data:  # the terminal went away
                return
            for key in data.decode(errors="replace"):
                try:
                    line = self.handle(key)
                except Exception:  # a failing key must not end the reader
                    log.exception("keyboard: key %r failed", key)
                    continue
                if line is not None:
                    self._print(line)

    def _print(self, line: str) -> None:
        print_lines([line], self.out)


def _usable_terminal(stream: TextIO) -> bool:
    """A terminal that reading will not stop us on: not our controlling terminal, or one whose
    foreground process group is ours (a background job that changes its mode gets SIGTTOU)."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    if not os.isatty(fd):
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not our controlling terminal: no job control applies
        return True
