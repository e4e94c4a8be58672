"""The run's metrics in experiment trackers: TensorBoard event files (`run.tensorboard`) and
Weights & Biases (`run.wandb_project`).

Each tracker is a listener of `metrics.RunMetrics`: every metrics record goes in as scalars at
step = the run's frame count (`frames`, which continues across a resume; `updates` is a scalar
of its own). A record's numbers become scalars under their own names (booleans as 0/1), nested
dictionaries flattened with `/` (`drops_by_reason/idle_timeout`); text, lists and unset values
(null) are left out, as are `time` (the event's wall time) and `final` (the marker of a run's
last record).

TensorBoard files are written by tensorboardX (a dependency: small, pure Python, no TensorFlow
or PyTorch) on its own background thread, flushed every FLUSH_S and when the run ends; `video`
adds a clip (RGB pictures, e.g. `render`'s) as an animated GIF that TensorBoard's Images tab
plays. W&B logging needs the `wandb` package, which is not a dependency: installed and logged in
(or in its offline mode) it receives the same scalars.
"""

from __future__ import annotations

import importlib
import re
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from tempest_jax.config import Config, ConfigError
from tempest_jax.rundir import RunDir
from tempest_jax.video import VIDEO_FPS, VideoWriter

FLUSH_S = 10
NOT_SCALARS = ("time", "final")
WANDB_ID_FILE = "wandb_id"


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """A metrics record's numbers by tag (see the module's docstring)."""
    out = {}
    for key, value in record.items():
        if not prefix and key in NOT_SCALARS:
            continue
        tag = prefix + re.sub(r"[^\w./-]", "_", str(key))
        if isinstance(value, dict):
            out.update(scalars(value, tag + "/"))
        elif isinstance(value, (bool, int, float, np.integer, np.floating)):
            out[tag] = float(value)
    return out


def _require(package: str, key: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ConfigError(f"{key} needs the Python package {package!r}, which cannot be "
                          f"imported ({e}): pip install {package}, or turn {key} off") from None


def check_trackers(cfg: Config) -> None:
    """ConfigError naming the package when a configured tracker's package is missing."""
    if cfg.run.tensorboard:
        _require("tensorboardX", "run.tensorboard")
    if cfg.run.wandb_project:
        _require("wandb", "run.wandb_project")


def start_trackers(cfg: Config, run: RunDir) -> list:
    """The trackers the config asks for, writing from now on."""
    trackers: list = []
    if cfg.run.tensorboard:
        trackers.append(TensorBoardLog(run.path))
    if cfg.run.wandb_project:
        trackers.append(WandbLog(cfg, run))
    return trackers


class TensorBoardLog:
    """TensorBoard event files in `directory` (one new file per process start: a resumed run
    adds one beside the earlier ones, and TensorBoard reads them as one run)."""

    def __init__(self, directory: Path):
        tensorboard_x = _require("tensorboardX", "run.tensorboard")
        from tensorboardX.proto.summary_pb2 import Summary

        self._summary = Summary
        self._writer = tensorboard_x.FileWriter(str(directory), flush_secs=FLUSH_S)

    def __call__(self, record: dict) -> None:
        values = [self._summary.Value(tag=tag, simple_value=value)
                  for tag, value in scalars(record).items()]
        self._writer.add_summary(self._summary(value=values), int(record["frames"]),
                                 record.get("time"))

    def video(self, tag: str, images: Sequence[np.ndarray], step: int,
              fps: int = VIDEO_FPS) -> None:
        """A clip of RGB uint8 pictures (height, width, 3), all one size, at `step` frames."""
        height, width = images[0].shape[:2]
        image = self._summary.Image(height=height, width=width, colorspace=3,
                                    encoded_image_string=gif_bytes(images, fps))
        self._writer.add_summary(self._summary(value=[self._summary.Value(tag=tag, image=image)]),
                                 step)

    def close(self) -> None:
        self._writer.close()


def gif_bytes(images: Sequence[np.ndarray], fps: int) -> bytes:
    """An animated GIF of RGB uint8 pictures, encoded by `video.VideoWriter` (ffmpeg)."""
    height, width = images[0].shape[:2]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "clip.gif"
        with VideoWriter(path, width, height, fps) as writer:
            for image in images:
                writer.write(image)
        return path.read_bytes()


class WandbLog:
    """One W&B run per run directory: a resumed run continues it (its id is kept in the run
    directory's `wandb_id`)."""

    def __init__(self, cfg: Config, run: RunDir):
        wandb = _require("wandb", "run.wandb_project")
        id_file = run.path / WANDB_ID_FILE
        if not id_file.is_file():
            id_file.write_text(secrets.token_hex(8))
        self._run = wandb.init(project=cfg.run.wandb_project, name=run.path.name,
                               id=id_file.read_text().strip(), resume="allow",
                               dir=str(run.path), config=cfg.without_secrets().to_dict())

    def __call__(self, record: dict) -> None:
        self._run.log(scalars(record), step=int(record["frames"]))

    def close(self) -> None:
        self._run.finish()
