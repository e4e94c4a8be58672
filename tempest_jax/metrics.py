"""Run bookkeeping: episode statistics, frame windows, the metrics file, the terminal row, and
queue-depth peaks.

Everything here runs on the host in numpy. Episode statistics are vectorised over streams (one
stream per simulator game or per connected client): one episode is one life, ended by a done
frame; a stream that disconnects or is interrupted drops its partial episode.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

WINDOWS = (("100k", 100_000), ("1m", 1_000_000), ("5m", 5_000_000))
EPISODE_HISTORY = 100_000


@dataclass
class EpisodeStats:
    """Per-stream running sums, turned into episode records on done frames."""

    num_streams: int
    reward: np.ndarray = field(init=False)
    length: np.ndarray = field(init=False)
    expert_steps: np.ndarray = field(init=False)
    ended: collections.deque = field(init=False)

    def __post_init__(self):
        self.reward = np.zeros(self.num_streams, np.float64)
        self.length = np.zeros(self.num_streams, np.int64)
        self.expert_steps = np.zeros(self.num_streams, np.int64)
        self.ended = collections.deque(maxlen=EPISODE_HISTORY)

    def grow(self, num_streams: int) -> None:
        if num_streams > self.num_streams:
            extra = num_streams - self.num_streams
            self.reward = np.concatenate([self.reward, np.zeros(extra)])
            self.length = np.concatenate([self.length, np.zeros(extra, np.int64)])
            self.expert_steps = np.concatenate([self.expert_steps, np.zeros(extra, np.int64)])
            self.num_streams = num_streams

    def add(self, streams: np.ndarray, reward: np.ndarray, is_expert: np.ndarray,
            done: np.ndarray, score: np.ndarray, level: np.ndarray, frame_count: int) -> None:
        """One frame for each of `streams` (unique, so a fancy-indexed add adds once each),
        with its scaled reward."""
        self.reward[streams] += reward
        self.length[streams] += 1
        self.expert_steps[streams] += is_expert
        rows = np.flatnonzero(done)
        finished = streams[rows]
        for row, s in zip(rows, finished):
            self.ended.append((frame_count, float(self.reward[s]), int(self.length[s]),
                               int(score[row]), int(level[row]),
                               float(self.expert_steps[s] / max(self.length[s], 1))))
        self.reset(finished)

    def reset(self, streams: np.ndarray) -> None:
        self.reward[streams] = 0.0
        self.length[streams] = 0
        self.expert_steps[streams] = 0

    def summary(self, frame_count: int) -> dict:
        """Means over the episodes that ended within each frame window."""
        out = {"episodes": len(self.ended)}
        if not self.ended:
            return out
        ended = np.asarray(self.ended, dtype=np.float64)
        for name, width in WINDOWS:
            recent = ended[ended[:, 0] > frame_count - width]
            if len(recent):
                out[f"reward_{name}"] = float(recent[:, 1].mean())
        last = ended[-min(len(ended), 100):]
        out.update(episode_reward=float(last[:, 1].mean()), episode_length=float(
            last[:, 2].mean()), score=float(last[:, 3].mean()), level=float(last[:, 4].mean() + 1),
            score_max=int(ended[:, 3].max()), level_max=int(ended[:, 4].max() + 1),
            expert_share=float(last[:, 5].mean()))
        return out


class MetricsLog:
    """Appends one JSON object per line; thread-safe; keeps the latest record in memory.
    With no path (a process other than 0 of a distributed run) it only keeps the latest."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self.latest: dict = {}

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), default=float)
        with self._lock:
            self.latest = record
            if self.path is None:
                return
            with self.path.open("a") as f:
                f.write(line + "\n")


class RunMetrics:
    """A run's metrics records: each gets the time and the frame and update rates since the
    previous one and goes to the metrics file (`log`) and to `listeners` (the dashboard);
    `print_row` shows it in the terminal (the header every HEADER_EVERY_ROWS rows)."""

    HEADER_EVERY_ROWS = 30

    def __init__(self, log: MetricsLog, frames: int, updates: int):
        self.log = log
        self.listeners: list = []
        self._mark = (time.monotonic(), frames, updates)
        self._rows = 0

    @property
    def latest(self) -> dict:
        return self.log.latest

    def write(self, record: dict, final: bool = False) -> dict:
        """`record` (with "frames" and "updates") completed and written. A final record
        follows the last periodic one at once: it gets no rates (they would be noise)."""
        now = time.monotonic()
        mark_time, mark_frames, mark_updates = self._mark
        elapsed = max(now - mark_time, 1e-9)
        self._mark = (now, record["frames"], record["updates"])
        record = {"time": time.time(), **record}
        if final:
            record["final"] = True
        else:
            record["fps"] = (record["frames"] - mark_frames) / elapsed
            record["updates_per_s"] = (record["updates"] - mark_updates) / elapsed
        self.log.write(record)
        for listener in self.listeners:
            listener(record)
        return record

    def print_row(self, record: dict, verbose: bool) -> None:
        lines = [header_row()] if self._rows % self.HEADER_EVERY_ROWS == 0 else []
        lines.append(format_row(record))
        if verbose:
            lines.append(detail_row(record))
        print_lines(lines)
        self._rows += 1


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics file; a torn last line (a killed run) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


ROW_COLUMNS = (("frames", "frames", "{:>11,.0f}"), ("fps", "fps", "{:>7,.0f}"),
               ("upd/s", "updates_per_s", "{:>6.1f}"), ("eps", "epsilon", "{:>5.3f}"),
               ("expert", "expert_ratio", "{:>6.3f}"), ("rew100k", "reward_100k", "{:>8.2f}"),
               ("rew1m", "reward_1m", "{:>7.2f}"), ("score", "score", "{:>8,.0f}"),
               ("level", "level", "{:>5.1f}"), ("loss", "loss", "{:>7.3f}"),
               ("clients", "clients", "{:>7.0f}"), ("inf_ms", "inference_ms", "{:>6.2f}"),
               ("replay", "replay_size", "{:>10,.0f}"))


def header_row() -> str:
    widths = [len(fmt.format(0)) for _, _, fmt in ROW_COLUMNS]
    return " ".join(title.rjust(w) for (title, _, _), w in zip(ROW_COLUMNS, widths))


def format_row(record: dict) -> str:
    cells = []
    for _, key, fmt in ROW_COLUMNS:
        value = record.get(key)
        width = len(fmt.format(0))
        cells.append(fmt.format(value) if isinstance(value, (int, float)) else "-".rjust(width))
    return " ".join(cells)


DETAIL_FIELDS = (("loss", "loss", "{:.4f}"), ("rl", "rl_loss", "{:.4f}"),
                 ("bc", "bc_loss", "{:.4f}"), ("bc_w", "bc_weight", "{:.3f}"),
                 ("grad", "grad_norm", "{:.3f}"), ("q_min", "q_min", "{:.2f}"),
                 ("q_max", "q_max", "{:.2f}"), ("agree", "agreement", "{:.3f}"),
                 ("lr", "lr", "{:.2e}"), ("lr_scale", "lr_scale", "{:g}"),
                 ("beta", "beta", "{:.3f}"), ("ratio", "replay_ratio", "{:.2f}"),
                 ("skipped", "skipped", "{:.2f}"), ("p99_ms", "latency_ms_p99", "{:.2f}"),
                 ("drops", "drops", "{:.0f}"))


def print_lines(lines: list[str], out: TextIO | None = None) -> None:
    """Terminal lines in one write: `print` writes a line's text and its newline separately, so
    a line printed from another thread (the keyboard's) could land between them."""
    out = out if out is not None else sys.stdout
    out.write("".join(line + "\n" for line in lines))
    out.flush()


def detail_row(record: dict) -> str:
    """The learner's side of a record on one line (the verbose mode of the keyboard's `v`)."""
    cells = [f"{name} {fmt.format(record[key])}" for name, key, fmt in DETAIL_FIELDS
             if isinstance(record.get(key), (int, float))]
    return "  " + "  ".join(cells)


class PeakWindow:
    """The largest value observed since the last `take`; each `take` starts the next window
    at the value current then (queue depths reported per metrics interval)."""

    def __init__(self) -> None:
        self.peak = 0

    def observe(self, value: int) -> None:
        if value > self.peak:
            self.peak = value

    def take(self, current: int) -> int:
        peak, self.peak = max(self.peak, current), current
        return peak
