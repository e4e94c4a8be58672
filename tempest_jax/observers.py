"""What watches a run from outside: the dashboard (with its live game view) and the experiment
trackers (TensorBoard, W&B). They start once the frame source runs, each gets every metrics
record, and they close when the run has stopped. Only process 0 of a distributed run has them.
"""

from __future__ import annotations

from tempest_jax.actor import Inference, ParamStore
from tempest_jax.config import Config
from tempest_jax.control import Controls
from tempest_jax.dashboard import Dashboard, start_dashboard
from tempest_jax.evaluate import PeriodicEvaluator
from tempest_jax.gameview import FrameWatch, GameView
from tempest_jax.metrics import RunMetrics
from tempest_jax.rundir import RunDir
from tempest_jax.sources import FrameSource
from tempest_jax.supervisor import Supervisor
from tempest_jax.trackers import check_trackers, start_trackers


class Observers:
    """The run's observers; the packages the config's trackers need are checked at once.
    `watch` holds the frames of the games the dashboard shows (the source fills it)."""

    def __init__(self, cfg: Config, run: RunDir, metrics: RunMetrics,
                 evaluator: PeriodicEvaluator | None = None):
        check_trackers(cfg)
        self.cfg, self.run, self.metrics, self.evaluator = cfg, run, metrics, evaluator
        self.watch = FrameWatch()
        self.dashboard: Dashboard | None = None
        self.trackers: list = []

    def start(self, source: FrameSource, inference: Inference, params: ParamStore,
              controls: Controls, supervisor: Supervisor) -> None:
        cfg = self.cfg
        if cfg.dashboard.enabled:
            kind = "game" if cfg.env.source == "sim" else "client"
            view = GameView(self.watch, source.games, kind, inference, params)
            self.dashboard = start_dashboard(cfg.dashboard, controls, supervisor, view.answer)
            if self.dashboard is not None:
                self.metrics.listeners.append(self.dashboard.add)
        self.trackers = start_trackers(cfg, self.run)
        self.metrics.listeners.extend(self.trackers)
        if self.evaluator is not None:
            self.evaluator.clip_sinks = [t.video for t in self.trackers if hasattr(t, "video")]
            self.evaluator.start()

    def close(self) -> None:
        """After the run's last metrics record (the evaluator has been told to stop)."""
        if self.evaluator is not None:
            self.evaluator.close()
        for tracker in self.trackers:
            tracker.close()
        if self.dashboard is not None:
            self.dashboard.close()
