"""Learning curves of one or more runs, drawn from their metrics files into one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from tempest_jax.metrics import read_metrics
from tempest_jax.rundir import RunDir

# (metrics key, panel title) of the four panels, each over frames.
PANELS = (("score", "mean game score at death (last 100 lives)"),
          ("level", "mean level reached (last 100 lives)"),
          ("loss", "learner loss"),
          ("fps", "frames per second"))


def load_runs(paths: list[str | Path]) -> dict[str, list[dict]]:
    runs = {}
    for path in paths:
        run = RunDir.open(path)
        records = [r for r in read_metrics(run.metrics_file) if "frames" in r]
        if not records:
            raise ValueError(f"{run.metrics_file} has no metrics records yet")
        runs[run.path.name] = records
    return runs


def plot_runs(paths: list[str | Path], out: str | Path) -> Path:
    """Draw the PANELS of every run (overlaid, one colour per run) into `out` (PNG)."""
    runs = load_runs(paths)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, PANELS):
        for name, records in runs.items():
            points = [(r["frames"], r[key]) for r in records if key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=name, linewidth=1.4)
        ax.set_title(title)
        ax.set_xlabel("frames")
        ax.grid(alpha=0.3)
        if key == "loss":
            ax.set_yscale("log")
    axes.flat[0].legend(loc="best", fontsize="small")
    fig.suptitle("tempest-jax learning curves")
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
