"""A training run: a frame source, the replay, the learner thread, checkpoints and metrics.

The source (`sources.SimSource`: the simulator and the actor in one jitted rollout;
`sources.ServerSource`: the game server for MAME and simulated clients) writes transitions into
the replay; the learner thread (`learning.Learning`) trains on it and publishes parameters to
the source's inference; `evaluate.PeriodicEvaluator` plays the network on seeded games now and
then. The main thread steps the source, writes a metrics record and a terminal row every
`run.log_interval_s`, checkpoints every `run.checkpoint_interval_s` and on request, and on
Ctrl-C, SIGTERM or the frame budget saves and exits. Every thread runs under the run's
`Supervisor`: one that fails or stalls stops the run, which then raises `RunFailed`. With
several processes the learner thread agrees with the others before each dispatch
(`coordinator.Lockstep`) and the run carries the decision out (`_coordinate`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import jax

from tempest_jax import distributed, schedules
from tempest_jax.actor import Inference, ParamStore
from tempest_jax.checkpoint import Checkpointer
from tempest_jax.config import Config
from tempest_jax.control import Controls
from tempest_jax.coordinator import Decision, Facts, lockstep_for
from tempest_jax.evaluate import PeriodicEvaluator
from tempest_jax.learner import make_learner
from tempest_jax.learning import Learning
from tempest_jax.metrics import EpisodeStats, MetricsLog, RunMetrics
from tempest_jax.networks import param_count
from tempest_jax.observers import Observers
from tempest_jax.replay import Replay
from tempest_jax.resume import start_point
from tempest_jax.rundir import RunDir
from tempest_jax.saving import RunSaver
from tempest_jax.sources import FrameSource, KeyStream, RunLinks, make_source
from tempest_jax.supervisor import RunFailed, Supervisor, ThreadFailure

log = logging.getLogger(__name__)


class Trainer:
    """One training run; `run()` until the frame budget, a signal, a failure or `stop()`."""

    def __init__(self, cfg: Config, run: RunDir, resume: bool = False,
                 install_signal_handlers: bool = True):
        self.cfg, self.run_dir, self._signal_handlers = cfg, run, install_signal_handlers
        self.learner = make_learner(cfg)
        self.inference = Inference(self.learner, cfg.learner.inference_dtype)
        self.lockstep = lockstep_for(cfg)
        checkpointer = Checkpointer(run.checkpoints, keep=cfg.run.keep_checkpoints)
        start = start_point(checkpointer, self.learner, cfg, run.path,
                            run.replay_snapshots if cfg.replay.snapshot else None, resume,
                            repair=distributed.is_primary())
        self.keys = KeyStream(start.key)
        # The run's frames: this process's plus the others' as of the last agreement.
        self._start_frames, self.peer_frames = start.local_frames, start.peer_frames
        self.init_from = start.init_from  # the checkpoint the network started from ("": none)
        self.source: FrameSource | None = None
        self._stop, self._stop_requested = threading.Event(), threading.Event()
        self.supervisor = Supervisor(cfg.run.stall_timeout_s,
                                     on_failure=lambda failure: self._stop.set())
        self.controls = Controls.for_run(cfg, lambda: self.frames, start.pulse_until)
        sim = cfg.env.source == "sim"
        streams = cfg.env.num_games if sim else cfg.server.max_clients
        slack = 4 * cfg.learner.batch_size * cfg.learner.updates_per_dispatch
        self.replay = Replay(cfg.replay, streams, slack, start.replay, start.transitions)
        self.episodes = EpisodeStats(streams)
        self.params = ParamStore(self.inference.params(start.train_state.params))
        self.param_count = param_count(start.train_state.params)
        self.learning = Learning(
            self.learner, self.inference, self.params, start.train_state, start.updates,
            self.replay, self.controls, cfg.learner, cfg.replay, cfg.schedule,
            lambda: self.frames, self.supervisor, self._stop, self.lockstep)
        self.saver = RunSaver(cfg, run, checkpointer, self.learner, self.replay.buffer,
                              self.supervisor, start.checkpoint)
        self.evaluator = PeriodicEvaluator(
            cfg, run.checkpoints, self.learner, self.learning, self.counters, self.supervisor,
            self._stop) if cfg.run.eval_interval and distributed.is_primary() else None
        # Process 0 writes the run's metrics; the others keep their latest record in memory.
        self.metrics = RunMetrics(MetricsLog(run.metrics_file if distributed.is_primary()
                                             else None), self.frames, self.updates)
        self.observers = Observers(cfg, run, self.metrics, self.evaluator)

    @property
    def local_frames(self) -> int:
        return self.source.frames if self.source is not None else self._start_frames

    @property
    def frames(self) -> int:
        return self.local_frames + self.peer_frames

    @property
    def updates(self) -> int:
        return self.learning.updates

    @property
    def server(self):
        """The game server of a served run (None before it listens, and on the simulator)."""
        return getattr(self.source, "server", None)

    def stop(self) -> None:
        """End the run (with several processes: all of them, at the next agreement)."""
        (self._stop_requested if self.lockstep else self._stop).set()

    def status(self) -> dict:
        """What the keyboard shows: the latest metrics record and the replay's statistics."""
        return {"record": self.metrics.latest,
                "replay": {**self.replay.buffer.stats(),
                           "samples_per_transition": self.replay.limiter.ratio()}}

    def counters(self) -> dict[str, int | str]:
        transitions = (self.lockstep.transitions() if self.lockstep and self.lockstep.agreed
                       else self.replay.transitions)
        return {"frames": self.frames, "updates": self.updates, "transitions": transitions,
                "pulse_until": self.controls.settings.pulse_until, "init_from": self.init_from}

    def save(self, final: bool = False) -> int | None:
        """Checkpoint now; the step. With several processes, None: every process saves at the
        next agreement."""
        if self.lockstep:
            self.controls.request_save()
            return None
        return self.saver.save(self.learning, self.counters, self.keys.key, final)

    # -- the run --------------------------------------------------------------------------------

    def run(self, frames: int | None = None) -> int:
        """Train until `frames` more frames (default: `run.total_frames` in all; 0 = no limit),
        a signal, a thread's failure (RunFailed) or `stop()`."""
        cfg = self.cfg
        total = self.frames + frames if frames else cfg.run.total_frames
        previous = {sig: signal.signal(sig, lambda *_: self.stop())
                    for sig in (signal.SIGINT, signal.SIGTERM)} if self._signal_handlers else {}
        self.supervisor.start_monitor()
        try:
            self.source = make_source(cfg, RunLinks(
                self.inference, self.params, self.replay, self.episodes, self.controls,
                lambda: self.frames, self.supervisor, self._stop, self.observers.watch),
                self.keys, self.local_frames)
            if distributed.is_primary():
                self.observers.start(self.source, self.inference, self.params, self.controls,
                                     self.supervisor)
            log.info("network: %s parameters; the actors multiply in %s", f"{self.param_count:,}",
                     self.inference.dtype_name)
            self.learning.start(self._coordinate if self.lockstep else None)
            self._loop(total)
        except Exception as e:  # the main thread's failure ends the run like any other's
            self.supervisor.fail(ThreadFailure(threading.current_thread().name,
                                               f"{type(e).__name__}: {e}", e))
        finally:
            resume_note = self._shut_down()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.supervisor.failure is not None:
            raise RunFailed(self.supervisor.failure, resume_note)
        log.info("run stopped at %s frames and %s updates; %s", f"{self.frames:,}",
                 f"{self.updates:,}", resume_note)
        return 0

    def _shut_down(self) -> str:
        """Stop every thread, save a final checkpoint unless the state is unsound, wait for the
        saves, write the final metrics record (none after a failure) and close the observers;
        where the run can resume from."""
        self._stop.set()
        self.learning.watch.join(timeout=60)
        if self.source is not None:
            self.source.close()  # every frame served is in replay and counted
        if not self.lockstep:  # lockstep saved at its agreed stop
            self.saver.save_final(self.learning, self.counters, self.keys.key,
                                  failed=self.supervisor.failure is not None)
        resume_note = self.saver.close()
        self.supervisor.close()
        if self.supervisor.failure is None:
            self.write_metrics(final=True)
        self.observers.close()
        return resume_note

    def _loop(self, total: int) -> None:
        cfg, controls = self.cfg, self.controls
        last_log = last_ckpt = time.monotonic()
        while not self._stop.is_set():
            self.source.apply(controls.settings)
            if self._stop_requested.is_set():
                self._stop.wait(0.05)  # every process stops at the next agreement
            else:
                self.source.collect()
            if controls.quit_requested.is_set():
                self.stop()
            now = time.monotonic()
            if now - last_log >= cfg.run.log_interval_s:
                record = self.write_metrics()
                if distributed.is_primary():
                    self.metrics.print_row(record, controls.verbose)
                else:
                    log.info("process %d: %d frames here, %d in the run, %d updates, replay %d",
                             jax.process_index(), self.local_frames, self.frames,
                             self.updates, len(self.replay.buffer))
                last_log = now
            if controls.save_requested.is_set() or now - last_ckpt >= cfg.run.checkpoint_interval_s:
                controls.save_requested.clear()
                self.save()
                last_ckpt = now
            if total and self.frames >= total:
                self.stop()

    def _coordinate(self, ready: bool) -> Decision:
        """One agreement with the other processes (from the learner thread), carried out:
        the peers' frames counted, a save or the final save made."""
        asks_save = self.controls.save_requested.is_set()
        decision = self.lockstep.agree(Facts(
            ready=ready, stop=self._stop_requested.is_set(), save=asks_save,
            frames=self.local_frames, replay_size=len(self.replay.buffer),
            transitions=self.replay.transitions,
            clients=self.server.stats.clients_connected if self.server else 0,
            lr_scale=self.controls.settings.lr_scale, episodes=self.metrics.latest))
        self.peer_frames = decision.run_frames - self.local_frames
        if decision.save or decision.stop:
            if asks_save:
                self.controls.save_requested.clear()
            with self.lockstep.guard(f"saving checkpoint {self.updates}"):
                self.saver.save(self.learning, self.counters, self.keys.key, final=decision.stop)
        if decision.stop:
            log.info("process %d stops at update %d; parameters digest %s", jax.process_index(),
                     self.updates, distributed.digest(self.learning.state.params))
            self._stop.set()
        return decision

    def write_metrics(self, final: bool = False) -> dict:
        record = {
            "frames": self.frames, "updates": self.updates,
            "epsilon": self.controls.effective_epsilon(),
            "expert_ratio": self.controls.effective_expert_ratio(),
            "beta": float(schedules.per_beta(self.frames, self.cfg.replay)),
            "replay_size": len(self.replay.buffer), "transitions": self.replay.transitions,
            "replay_ratio": self.replay.limiter.ratio(), "params": self.param_count,
            **self.controls.state(), **self.learning.metrics,
            **self.episodes.summary(self.frames),
            **(self.source.metrics() if self.source is not None else {}),
            **(self.evaluator.latest if self.evaluator is not None else {}),
        }
        if self.lockstep and self.lockstep.agreed:
            record.update(self.lockstep.combined(served=self.cfg.env.source == "mame"))
        return self.metrics.write(record, final)
