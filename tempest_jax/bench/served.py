"""The training server a bench measures: the real run (`train --env mame`) in this process."""

from __future__ import annotations

import tempfile
import threading
import time

from tempest_jax.config import Config
from tempest_jax.rundir import RunDir
from tempest_jax.supervisor import RunFailed
from tempest_jax.train import Trainer

STARTUP_LIMIT_S = 600.0  # building the run and compiling inference, on a loaded machine


class ServedRun:
    """`with ServedRun(cfg) as run:` a Trainer of `cfg` (served, on a free loopback port, in a
    temporary run directory) runs on a thread; inside the block `run.address` serves clients.
    A thread of the run that fails lands in `run.errors` (the run stops); leaving the block
    stops the run and waits for it. `training=False` starts with the learner paused; the run
    writes a metrics record (and a terminal row) every `log_interval_s`."""

    def __init__(self, cfg: Config, training: bool = True, log_interval_s: float = 3600.0):
        self._tmp = tempfile.TemporaryDirectory()
        cfg = cfg.replace(env={"source": "mame"}, dashboard={"enabled": False},
                          server={"host": "127.0.0.1", "port": 0},
                          run={"dir": self._tmp.name, "name": "bench", "total_frames": 0,
                               "log_interval_s": log_interval_s,
                               "checkpoint_interval_s": 3600.0})
        self.cfg = cfg
        self.errors: list[str] = []
        self.trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
        self.trainer.controls.set_training(training)
        self._thread = threading.Thread(target=self._run, name="bench-trainer", daemon=True)

    def _run(self) -> None:
        try:
            self.trainer.run()
        except RunFailed as e:
            self.errors.append(f"trainer: {e}")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        return self.trainer.server.address

    def __enter__(self) -> ServedRun:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while self.trainer.server is None:
            if not self.alive or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the training server did not start: {self.errors}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.trainer.stop()
        self._thread.join()
        self._tmp.cleanup()
