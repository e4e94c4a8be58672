"""One typed, frozen configuration for every part of a run.

A config is built from the dataclass defaults, then a preset file (one shipped in the package,
`tempest_jax/configs/NAME.toml`, or any .toml path), then `--set section.key=value` overrides,
each step validated: unknown sections or keys, wrong types and out-of-range values raise
`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import ipaddress
import os
import tomllib
import typing
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

# The presets ship inside the package (package data), so an installed wheel has them too.
PRESETS = importlib.resources.files("tempest_jax") / "configs"
DEFAULT_PRESET = "sim"
TOKEN_ENV = "TEMPEST_TOKEN"  # the game server's token, read by the server and our clients
# Secrets are never written to a run directory or a checkpoint: a saved config holds this
# marker instead, and a run resumed from it must be given the secret again.
REDACTED = "<redacted>"
SECRET_KEYS = (("server", "token"), ("dashboard", "token"))
CABINET_START_LEVEL_MAX = 81  # the level select's highest level (as for MAME's start_level_min)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A bad config value, key or preset; the message names the key and the valid choices."""


def _opt(default=dataclasses.MISSING, *, factory=dataclasses.MISSING, lo=None, hi=None,
         choices=None, doc=""):
    return field(default=default, default_factory=factory,
                 metadata={"lo": lo, "hi": hi, "choices": choices, "doc": doc})


def parse_networks(text: str, key: str) -> tuple[IPNetwork, ...]:
    """`"10.0.0.0/8, 192.168.1.7"` → networks (an address is its /32 or /128)."""
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ConfigError(f"{key} is empty: list the client networks to accept, e.g. "
                          "192.168.1.0/24 (0.0.0.0/0 accepts any IPv4 client)")
    networks = []
    for entry in entries:
        if not entry:
            raise ConfigError(f"{key} = {text!r} has an empty entry (stray comma?)")
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"{key}: {entry!r} is not a network or address (expected e.g. "
                              "10.0.0.0/8, 192.168.1.7 or ::1)") from None
    return tuple(networks)


def machine_replay_capacity(bytes_per_transition: int = 450, memory_fraction: float = 0.4) -> int:
    """Default replay capacity: a fraction of this machine's RAM, at most 15M transitions."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    fit = int(total * memory_fraction) // bytes_per_transition
    return max(100_000, min(15_000_000, fit // 100_000 * 100_000))


class _Section:
    """Base of config sections: validates every field on construction."""

    SECTION: typing.ClassVar[str]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check(self.SECTION, f, getattr(self, f.name))


@dataclass(frozen=True)
class EnvConfig(_Section):
    SECTION = "env"
    source: str = _opt("sim", choices=("sim", "mame"), doc="frame source for `train`")
    num_games: int = _opt(256, lo=1, hi=1 << 20, doc="parallel simulator games in-process")
    start_level: int = _opt(1, lo=1, hi=99, doc="1-based level simulator games start on")
    start_level_span: int = _opt(1, lo=1, hi=99, doc="games start on the levels start_level .. "
                                 "start_level + span - 1, spread evenly over them (game i on "
                                 "start_level + i mod span), so training sees later levels "
                                 "before the network reaches them; 1: all on start_level")
    cabinet: bool = _opt(False, doc="simulator games as whole cabinets (attract mode, coin, "
                         "level select to start_level, initials), played as the Lua client "
                         "plays MAME; off: games start directly on start_level")
    seed: int = _opt(0, lo=0, doc="simulator seed")
    rollout_steps: int = _opt(16, lo=1, hi=4096, doc="simulator ticks per jitted act+step call")

    def __post_init__(self):
        super().__post_init__()
        if self.cabinet and self.start_level > CABINET_START_LEVEL_MAX:
            raise ConfigError(f"env.start_level = {self.start_level}: a cabinet's level select "
                              f"offers levels 1..{CABINET_START_LEVEL_MAX} (env.cabinet)")
        if self.start_level + self.start_level_span - 1 > 99:
            raise ConfigError(f"env.start_level + env.start_level_span - 1 = "
                              f"{self.start_level + self.start_level_span - 1}: the last "
                              "level is 99")
        if self.cabinet and self.start_level_span > 1:
            raise ConfigError("env.start_level_span > 1 needs games started directly on their "
                              "levels; a cabinet's level select starts every game on one "
                              "(env.cabinet)")


@dataclass(frozen=True)
class RewardConfig(_Section):
    SECTION = "reward"
    obj_scale: float = _opt(0.01, lo=0.0, doc="objective (points) reward scale")
    subj_scale: float = _opt(0.005, lo=0.0, doc="subjective (lane safety) reward scale")
    clip: float = _opt(10.0, lo=0.0, doc="per-frame reward clip |r| <= clip")


@dataclass(frozen=True)
class ReplayConfig(_Section):
    SECTION = "replay"
    capacity: int = _opt(factory=machine_replay_capacity, lo=1_000, hi=1 << 31,
                         doc="transitions held; default sized to this machine's RAM")
    n_step: int = _opt(12, lo=1, hi=64, doc="n-step return horizon")
    gamma: float = _opt(0.99, lo=0.0, hi=1.0, doc="discount per frame")
    alpha: float = _opt(0.7, lo=0.0, hi=1.0, doc="PER priority exponent")
    beta_start: float = _opt(0.4, lo=0.0, hi=1.0, doc="PER importance exponent at frame 0")
    beta_end: float = _opt(1.0, lo=0.0, hi=1.0)
    beta_frames: int = _opt(10_000_000, lo=1, doc="frames over which beta anneals")
    priority_eps: float = _opt(1e-6, lo=0.0, doc="added to every priority so none is 0")
    new_priority_cap: float = _opt(3.0, lo=1.0, doc="new items capped at this x mean priority")
    death_priority_floor: float = _opt(5.0, lo=0.0, doc="min |hint| of a terminal transition")
    pre_death_lookback: int = _opt(120, lo=0, hi=10_000, doc="transitions boosted before a death")
    pre_death_boost: float = _opt(2.0, lo=1.0, doc="priority multiplier before a death")
    min_size: int = _opt(10_000, lo=1, doc="transitions stored before learning starts")
    replay_ratio: float = _opt(8.0, lo=0.0, doc="samples per inserted transition (0: no limit)")
    cut_at_actor_change: bool = _opt(True, doc="end n-step chains where expert/network switch")
    snapshot: bool = _opt(False, doc="save the replay buffer with checkpoints")


@dataclass(frozen=True)
class NetworkConfig(_Section):
    SECTION = "network"
    num_atoms: int = _opt(51, lo=2, hi=1001, doc="C51 atoms")
    v_min: float = _opt(-100.0, doc="support minimum")
    v_max: float = _opt(100.0, doc="support maximum")
    trunk_width: int = _opt(384, lo=1, hi=16384)
    trunk_layers: int = _opt(2, lo=1, hi=16)
    attn_dim: int = _opt(128, lo=1, hi=4096)
    attn_heads: int = _opt(8, lo=1, hi=64)
    head_hidden: int = _opt(192, lo=1, hi=16384)
    dueling: bool = _opt(True)
    dtype: str = _opt("float32", choices=("float32", "bfloat16"), doc="compute dtype")


@dataclass(frozen=True)
class LearnerConfig(_Section):
    SECTION = "learner"
    batch_size: int = _opt(256, lo=1, hi=1 << 16)
    lr: float = _opt(1e-4, lo=0.0, hi=1.0, doc="peak learning rate")
    lr_min: float = _opt(4e-5, lo=0.0, hi=1.0)
    warmup_steps: int = _opt(5_000, lo=0)
    cosine_period: int = _opt(3_000_000, lo=1, doc="cosine restart period in updates")
    adam_eps: float = _opt(1.5e-4, lo=0.0)
    grad_clip: float = _opt(5.0, lo=0.0, doc="global gradient-norm clip")
    target_update: int = _opt(2_500, lo=1, doc="updates between hard target syncs")
    updates_per_dispatch: int = _opt(8, lo=1, hi=1024, doc="K updates per jitted call")
    bc_temperature: float = _opt(1.0, lo=1e-6, doc="BC loss: cross-entropy of the expert's "
                                 "action under softmax(Q / bc_temperature)")
    publish_interval: int = _opt(100, lo=1, doc="updates between parameter publishes")
    inference_dtype: str = _opt("auto", choices=("auto", "float32", "bfloat16"),
                                doc="matmul dtype of the actors' forward pass (float32 "
                                    "accumulation); auto: bfloat16 on CPUs with AMX-BF16")
    seed: int = _opt(0, lo=0)


@dataclass(frozen=True)
class ScheduleConfig(_Section):
    SECTION = "schedule"
    eps_start: float = _opt(1.0, lo=0.0, hi=1.0)
    eps_end: float = _opt(0.01, lo=0.0, hi=1.0)
    eps_frames: int = _opt(500_000, lo=1)
    eps_zoom_mult: float = _opt(0.2, lo=0.0, hi=1.0)
    eps_zap_prob: float = _opt(0.0, lo=0.0, hi=1.0, doc="zap probability of random actions")
    eps_pulse: float = _opt(0.25, lo=0.0, hi=1.0, doc="epsilon floor during a manual pulse")
    eps_pulse_frames: int = _opt(750_000, lo=1)
    expert_start: float = _opt(0.5, lo=0.0, hi=1.0)
    expert_end: float = _opt(0.02, lo=0.0, hi=1.0)
    expert_frames: int = _opt(5_000_000, lo=1)
    expert_zoom_mult: float = _opt(2.0, lo=0.0)
    expert_segment_frames: int = _opt(120, lo=1, doc="frames a game keeps one actor (expert or "
                                      "network) before the next draw, and a new draw at each "
                                      "life's start; at least replay.n_step")
    bc_weight_start: float = _opt(1.0, lo=0.0)
    bc_weight_end: float = _opt(0.001, lo=0.0)
    bc_decay_start: int = _opt(500_000, lo=0)
    bc_decay_frames: int = _opt(2_000_000, lo=1)
    zap_gate_frames: int = _opt(10_000_000, lo=1, doc="frames over which the zap gate opens")


@dataclass(frozen=True)
class ServerConfig(_Section):
    SECTION = "server"
    host: str = _opt("127.0.0.1", doc="bind address (loopback unless you choose otherwise)")
    port: int = _opt(9999, lo=0, hi=65535)
    max_clients: int = _opt(64, lo=1, hi=4096)
    batch_wait_ms: float = _opt(1.0, lo=0.0, hi=1000.0, doc="wait budget to fill a batch")
    max_batch: int = _opt(128, lo=1, hi=65536)
    handshake_timeout_s: float = _opt(5.0, lo=0.01)
    stall_timeout_s: float = _opt(10.0, lo=0.01, doc="drop a client stuck mid-frame this long")
    idle_timeout_s: float = _opt(600.0, lo=0.0, doc="drop a client silent this long after its "
                                 "last reply or byte (0 = never; a paused MAME is silent)")
    allow: str = _opt("127.0.0.0/8,::1", doc="comma-separated client networks accepted (CIDR "
                      "or address); list yours when host is not loopback; 0.0.0.0/0 = any")
    token: str = _opt("", doc=f"shared secret clients must send; empty: ${TOKEN_ENV}, and "
                      "with neither set no token is asked")
    start_advanced: bool = _opt(True, doc="reply byte 3: start on the highest offered level")
    start_level_min: int = _opt(13, lo=1, hi=81, doc="reply byte 4: 1-based start level")

    def __post_init__(self):
        super().__post_init__()
        parse_networks(self.allow, key=f"{self.SECTION}.allow")

    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.allow, key=f"{self.SECTION}.allow")

    def resolved_token(self) -> str:
        """server.token, else the TEMPEST_TOKEN environment variable (keeps the secret off
        command lines); "" = no token. A run resumed from its saved config, where the token
        was redacted, needs $TEMPEST_TOKEN or --set server.token again."""
        env = os.environ.get(TOKEN_ENV, "")
        if self.token == REDACTED and not env:
            raise ConfigError(f"{self.SECTION}.token was set when this run started and is not "
                              f"saved with it: give it again (${TOKEN_ENV}, or --set "
                              f"{self.SECTION}.token=...)")
        return env if self.token == REDACTED else self.token or env


@dataclass(frozen=True)
class DashboardConfig(_Section):
    SECTION = "dashboard"
    enabled: bool = _opt(True)
    host: str = _opt("127.0.0.1")
    port: int = _opt(8765, lo=0, hi=65535)
    token: str = _opt("", doc="required for settings changes; empty = read-only")

    def resolved_token(self) -> str:
        """dashboard.token; a run resumed from its saved config (where the token was
        redacted) needs --set dashboard.token again."""
        if self.token == REDACTED:
            raise ConfigError(f"{self.SECTION}.token was set when this run started and is not "
                              f"saved with it: give it again (--set {self.SECTION}.token=...)")
        return self.token


@dataclass(frozen=True)
class RunConfig(_Section):
    SECTION = "run"
    dir: str = _opt("runs", doc="parent directory of run directories")
    name: str = _opt("", doc="run directory name; empty = timestamp")
    total_frames: int = _opt(0, lo=0, doc="stop after this many frames (0 = no limit)")
    checkpoint_interval_s: float = _opt(300.0, lo=1.0)
    keep_checkpoints: int = _opt(3, lo=1, hi=1000)
    log_interval_s: float = _opt(5.0, lo=0.1)
    eval_interval: int = _opt(10_000, lo=0, doc="updates between periodic evaluations: the "
                              "greedy network plays eval_games seeded simulator games in the "
                              "background; the best scoring is kept as checkpoints/best (0 = off)")
    eval_games: int = _opt(16, lo=1, hi=4096, doc="games of a periodic evaluation")
    eval_seed: int = _opt(20_261_203, lo=0, doc="seed of the periodic evaluation's games (the "
                          "same games every time)")
    eval_max_ticks: int = _opt(20_000, lo=1, doc="a periodic evaluation's games stop after this")
    stall_timeout_s: float = _opt(300.0, lo=0.0, doc="a run thread (server, learner, "
                                  "replay prefetcher, ...) with work waiting and no progress "
                                  "for this long ends the run with an error; 0 = never")
    init_from: str = _opt("", doc="a new run's network starts from this checkpoint of another "
                          "run: RUN_DIR[:best|latest|STEP] (train --init-from); a run that has "
                          "checkpoints of its own resumes from them instead")
    init_optimizer: bool = _opt(False, doc="with init_from: start from its optimizer state "
                                "(Adam's moments) too (train --init-optimizer)")
    tensorboard: bool = _opt(False, doc="also write every metric as a TensorBoard scalar "
                             "(event files in the run directory; needs tensorboardX)")
    wandb_project: str = _opt("", doc="also log every metric to this Weights & Biases "
                              "project (needs the wandb package); empty = off")


@dataclass(frozen=True)
class DistributedConfig(_Section):
    """Multi-host training on JAX's distributed runtime (`jax.distributed.initialize`).

    Empty/negative values are detected from the environment where JAX can (Cloud TPU VMs,
    SLURM, Open MPI, Kubernetes) or read from JAX_COORDINATOR_ADDRESS and friends."""

    SECTION = "distributed"
    enabled: bool = _opt(False, doc="join a multi-process run (also: train --distributed)")
    coordinator_address: str = _opt("", doc="host:port of process 0's coordinator; empty = "
                                     "detect (TPU, SLURM, MPI) or $JAX_COORDINATOR_ADDRESS")
    num_processes: int = _opt(0, lo=0, hi=65536, doc="processes in the job; 0 = detect")
    process_id: int = _opt(-1, lo=-1, hi=65535, doc="this process's index; -1 = detect")
    local_device_ids: str = _opt("", doc="comma-separated local accelerator ids this process "
                                 "uses; empty = all (or one per process under SLURM/MPI)")
    cluster_detection: str = _opt("auto", choices=("auto", "none", "slurm", "ompi", "mpi4py",
                                                   "gcetpu", "gketpu"),
                                  doc="JAX's cluster detection method; none = explicit only")
    initialization_timeout_s: int = _opt(300, lo=1, doc="wait this long for all processes")
    heartbeat_timeout_s: int = _opt(100, lo=1, doc="a silent process is declared dead after "
                                    "this; the others then exit with an error")
    shutdown_timeout_s: int = _opt(300, lo=1, doc="wait this long at exit for the others")
    collective_timeout_s: float = _opt(600.0, lo=1.0, doc="a step's collective that has not "
                                       "returned after this ends the process with an error")


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self):
        if self.network.v_min >= self.network.v_max:
            raise ConfigError(f"network.v_min ({self.network.v_min}) must be below "
                              f"network.v_max ({self.network.v_max})")
        if self.network.attn_dim % self.network.attn_heads:
            raise ConfigError(f"network.attn_dim ({self.network.attn_dim}) must be a multiple "
                              f"of network.attn_heads ({self.network.attn_heads})")
        if self.schedule.expert_segment_frames < self.replay.n_step:
            raise ConfigError(f"schedule.expert_segment_frames "
                              f"({self.schedule.expert_segment_frames}) must be at least "
                              f"replay.n_step ({self.replay.n_step}): n-step returns end where "
                              "the actor changes")
        if self.learner.lr_min > self.learner.lr:
            raise ConfigError(f"learner.lr_min ({self.learner.lr_min}) must not exceed "
                              f"learner.lr ({self.learner.lr})")
        if self.run.init_optimizer and not self.run.init_from:
            raise ConfigError("run.init_optimizer needs run.init_from: the checkpoint whose "
                              "optimizer state to start from")

    @property
    def games_start_level(self) -> int:
        """The 1-based level the run's games start on: env.start_level on the simulator,
        server.start_level_min for the clients a served run tells (MAME or sim clients)."""
        return self.env.start_level if self.env.source == "sim" else self.server.start_level_min

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys changed: `cfg.replace(learner={"lr": 1e-4})`."""
        return _apply(self, {s: dict(kv) for s, kv in sections.items()}, origin="replace")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s.name: dataclasses.asdict(getattr(self, s.name)) for s in dataclasses.fields(self)}

    def without_secrets(self) -> Config:
        """The copy to write to disk: each secret that is set becomes REDACTED."""
        changes: dict[str, dict[str, Any]] = {}
        for section, key in SECRET_KEYS:
            if getattr(getattr(self, section), key):
                changes.setdefault(section, {})[key] = REDACTED
        return self.replace(**changes) if changes else self

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]], origin: str = "dict") -> Config:
        return _apply(cls(), data, origin=origin)

    def to_toml(self) -> str:
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
            lines.append("")
        return "\n".join(lines)


_SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name]
                              for f in dataclasses.fields(Config)}
_TYPES: dict[str, dict[str, type]] = {
    name: {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    for name, cls in _SECTIONS.items()}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def _describe(f: dataclasses.Field, typ: type) -> str:
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    parts = [typ.__name__]
    if meta.get("lo") is not None:
        parts.append(f">= {meta['lo']}")
    if meta.get("hi") is not None:
        parts.append(f"<= {meta['hi']}")
    return " ".join(parts)


def _check(section: str, f: dataclasses.Field, value: Any) -> None:
    typ = _TYPES[section][f.name]
    key = f"{section}.{f.name}"
    ok_type = (isinstance(value, bool) if typ is bool
               else isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float
               else isinstance(value, int) and not isinstance(value, bool) if typ is int
               else isinstance(value, typ))
    if not ok_type:
        raise ConfigError(f"{key} must be {_describe(f, typ)}, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if (meta.get("lo") is not None and value < meta["lo"]) or (
            meta.get("hi") is not None and value > meta["hi"]):
        raise ConfigError(f"{key} = {value!r} is out of range: must be {_describe(f, typ)}")


def _coerce(section: str, key: str, text: str) -> Any:
    """Parse a command-line value by the key's declared type."""
    typ = _TYPES[section][key]
    if typ is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{section}.{key} must be true or false, got {text!r}")
    if typ is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{section}.{key} must be an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{section}.{key} must be a number, got {text!r}") from None
    return text


def _apply(base: Config, data: dict[str, Any], origin: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected [section] tables, got {type(data).__name__}")
    sections = {}
    for section, values in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section {section!r}; valid sections: "
                              + ", ".join(_SECTIONS))
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of keys")
        known = _TYPES[section]
        values = dict(values)
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown key {section}.{key}; valid keys in "
                                  f"[{section}]: " + ", ".join(known))
            if _TYPES[section][key] is float and isinstance(value, int) and not isinstance(
                    value, bool):
                values[key] = float(value)
        sections[section] = dataclasses.replace(getattr(base, section), **values)
    return dataclasses.replace(base, **sections)


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` → (section, key, typed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    if "." not in dotted:
        raise ConfigError(f"override {text!r} must name section.key; valid sections: "
                          + ", ".join(_SECTIONS))
    section, key = (s.strip() for s in dotted.split(".", 1))
    if section not in _SECTIONS:
        raise ConfigError(f"unknown section {section!r} in override {text!r}; valid sections: "
                          + ", ".join(_SECTIONS))
    if key not in _TYPES[section]:
        raise ConfigError(f"unknown key {section}.{key}; valid keys in [{section}]: "
                          + ", ".join(_TYPES[section]))
    return section, key, _coerce(section, key, raw)


def preset_names() -> list[str]:
    return sorted(entry.name.removesuffix(".toml") for entry in PRESETS.iterdir()
                  if entry.name.endswith(".toml"))


def preset_path(name_or_path: str) -> Path | Traversable:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} not found")
        return path
    candidate = PRESETS / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise ConfigError(f"unknown config preset {name_or_path!r}; valid presets: "
                          + ", ".join(preset_names()) + " (or a path to a .toml file)")
    return candidate


def load_config(preset: str | None = DEFAULT_PRESET, overrides: list[str] = ()) -> Config:
    """Defaults, then the preset file (a preset name or a path), then overrides."""
    cfg = Config()
    if preset:
        path = preset_path(preset)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        cfg = _apply(cfg, data, origin=str(path))
    grouped: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        grouped.setdefault(section, {})[key] = value
    return _apply(cfg, grouped, origin="--set") if grouped else cfg
