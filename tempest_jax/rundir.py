"""A run's directory: its resolved config, metrics file, checkpoints and replay snapshots."""

from __future__ import annotations

import time
from pathlib import Path

from tempest_jax.config import Config


class RunDir:
    """`runs/NAME/` with the resolved config, a metrics JSONL file, checkpoints and replay
    snapshots."""

    def __init__(self, path: Path):
        self.path = path
        self.checkpoints = path / "checkpoints"
        self.replay_snapshots = path / "replay"
        self.metrics_file = path / "metrics.jsonl"
        self.config_file = path / "config.toml"

    @classmethod
    def create(cls, cfg: Config) -> RunDir:
        name = cfg.run.name or time.strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.run.dir) / name
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"run directory {path} already exists and is not empty; "
                                  "use --resume to continue it or pick another run.name")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.checkpoints.mkdir(exist_ok=True)
        run.config_file.write_text(cfg.without_secrets().to_toml())
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(Path(path))
        if not run.config_file.is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no config.toml)")
        return run


def checkpoint_dir(path: str | Path) -> Path:
    """A run directory or its checkpoints/ directory → the checkpoints directory."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.is_dir():
        return path
    raise FileNotFoundError(f"{path}: no such run or checkpoint directory")
