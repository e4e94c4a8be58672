"""What watches a run from outside: the dashboard (with its live game view). It starts once the
frame source runs, gets every metrics record, and closes when the run has stopped. Only process
0 of a distributed run has it.
"""

from __future__ import annotations

from tempest_jax.actor import Inference, ParamStore
from tempest_jax.config import Config
from tempest_jax.control import Controls
from tempest_jax.dashboard import Dashboard, start_dashboard
from tempest_jax.gameview import FrameWatch, GameView
from tempest_jax.metrics import RunMetrics
from tempest_jax.rundir import RunDir
from tempest_jax.sources import FrameSource
from tempest_jax.supervisor import Supervisor


class Observers:
    """The run's observers. `watch` holds the frames of the games the dashboard shows (the
    source fills it)."""

    def __init__(self, cfg: Config, run: RunDir, metrics: RunMetrics):
        self.cfg, self.run, self.metrics = cfg, run, metrics
        self.watch = FrameWatch()
        self.dashboard: Dashboard | None = None

    def start(self, source: FrameSource, inference: Inference, params: ParamStore,
              controls: Controls, supervisor: Supervisor) -> None:
        cfg = self.cfg
        if cfg.dashboard.enabled:
            kind = "game" if cfg.env.source == "sim" else "client"
            view = GameView(self.watch, source.games, kind, inference, params)
            self.dashboard = start_dashboard(cfg.dashboard, controls, supervisor, view.answer)
            if self.dashboard is not None:
                self.metrics.listeners.append(self.dashboard.add)

    def close(self) -> None:
        """After the run's last metrics record."""
        if self.dashboard is not None:
            self.dashboard.close()
