"""Experiment trackers: the scalars a metrics record gives, TensorBoard event files read back
with TensorBoard's own reader, and the W&B wiring (a stand-in module: tests never reach the
network). The event files of a real run are compared with its metrics file in
test_train_sim_eval."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tempest_jax.config import ConfigError, load_config
from tempest_jax.protocol import HEADER_FIELDS
from tempest_jax.render import render
from tempest_jax.rundir import RunDir
from tempest_jax.sim import reset
from tempest_jax.trackers import TensorBoardLog, WandbLog, check_trackers, scalars

RECORDS = [
    {"time": 1000.0, "frames": 512, "updates": 0, "fps": 100.5, "training": True,
     "epsilon_override": None, "drops_by_reason": {"idle timeout": 2}, "note": "text"},
    {"time": 1001.0, "frames": 1024, "updates": 3, "fps": 120.25, "training": False,
     "loss": 0.125, "drops_by_reason": {"idle timeout": 3}},
    {"time": 1002.0, "frames": 1024, "updates": 3, "loss": 0.5, "final": True},
]


def read_events(directory) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_a_record_gives_its_numbers_with_nested_names():
    assert scalars(RECORDS[0]) == {"frames": 512.0, "updates": 0.0, "fps": 100.5,
                                   "training": 1.0, "drops_by_reason/idle_timeout": 2.0}
    assert "final" not in scalars(RECORDS[2]) and scalars(RECORDS[2])["loss"] == 0.5


def test_tensorboard_scalars_and_a_clip_read_back(tmp_path):
    log = TensorBoardLog(tmp_path)
    for record in RECORDS:
        log(record)
    _, frame = jax.device_get(reset(jax.random.key(0), 1, 1))
    picture = render(frame.state[0], {name: getattr(frame, name)[0]
                                      for name in HEADER_FIELDS[1:]}, size=128)
    log.video("eval/game", [picture, picture[::-1].copy(), picture], step=1024, fps=10)
    log.close()

    events = read_events(tmp_path)
    for tag in ("frames", "fps", "loss", "training", "drops_by_reason/idle_timeout"):
        expected = [(int(r["frames"]), np.float32(scalars(r)[tag])) for r in RECORDS
                    if tag in scalars(r)]
        got = [(e.step, np.float32(e.value)) for e in events.Scalars(tag)]
        assert got == expected, tag
    assert events.Scalars("fps")[0].wall_time == 1000.0
    (clip,) = events.Images("eval/game")
    assert (clip.step, clip.width, clip.height) == (1024, 128, 128)
    assert clip.encoded_image_string.startswith(b"GIF8")


def test_a_missing_package_is_named_at_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # its import now fails
    monkeypatch.setitem(sys.modules, "wandb", None)
    check_trackers(load_config("smoke"))  # neither asked for: nothing is needed
    with pytest.raises(ConfigError, match=r"run.tensorboard needs .*'tensorboardX'"):
        check_trackers(load_config("smoke", ["run.tensorboard=true"]))
    with pytest.raises(ConfigError, match=r"run.wandb_project needs .*'wandb'"):
        check_trackers(load_config("smoke", ["run.wandb_project=tempest"]))


class FakeWandb:
    """What WandbLog uses of the wandb package, recorded."""

    def __init__(self):
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return SimpleNamespace(log=lambda values, step: self.logged.append((step, values)),
                               finish=self.finish)

    def finish(self):
        self.finished += 1


def test_wandb_gets_every_record_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = load_config("smoke", [f"run.dir={tmp_path}", "run.name=w", "run.wandb_project=tempest",
                                "dashboard.token=secret"])
    run = RunDir.create(cfg)
    log = WandbLog(cfg, run)
    for record in RECORDS:
        log(record)
    log.close()
    WandbLog(cfg, RunDir.open(run.path)).close()  # the run resumed
    first, again = fake.inits
    assert first["project"] == "tempest" and first["name"] == "w" and first["dir"] == str(run.path)
    assert first["resume"] == "allow" and again["id"] == first["id"]
    assert first["config"]["dashboard"]["token"] != "secret"
    assert fake.logged == [(int(r["frames"]), scalars(r)) for r in RECORDS]
    assert fake.finished == 2
