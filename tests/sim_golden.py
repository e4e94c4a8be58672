"""Golden trajectories of the simulator: seeded games whose every tick must replay bit for bit.

Eight games of TICKS ticks each, from fixed seeds and start levels (closed and open tubes, early
and late waves); four follow the expert, four play actions from a fixed numpy stream, so the
recording holds level play, zooms, level changes, deaths, game overs and restarts. Per game and
tick the file keeps a 64-bit digest (the first 8 bytes of SHA-256) of the RAM image and one of
the frame (every header field and the 195 state values, in `Frame` field order), and the full
RAM images and state vectors at a few ticks to show where a mismatch lies.

tests/test_sim_golden.py replays the games and requires identical digests. A change that is
meant to change the game regenerates the file, from the repository root:

    PYTHONPATH=$PWD python tests/sim_golden.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.sim.compiling import jit

GOLDEN_PATH = Path(__file__).parent / "data" / "sim_golden.npz"
TICKS = 3000
# (1-based start level, policy): levels 8, 9 and 14 are open tubes; 17+ have pulsars, 33+
# fuseball cargo, 49+ faster waves.
GAMES = ((1, "expert"), (9, "expert"), (17, "expert"), (49, "expert"),
         (1, "random"), (8, "random"), (14, "random"), (33, "random"))
SEED = 2024
CHECKPOINT_TICKS = (0, 1000, 2000, TICKS)


def random_actions(ticks: int, games: int) -> np.ndarray:
    """int32[ticks, games] joint actions from a fixed numpy stream."""
    return np.random.default_rng(SEED).integers(0, F.NUM_ACTIONS, (ticks, games), np.int32)


@jit(static_argnums=(3,))
def _rollout(state, frame, table, ticks, use_expert):
    def body(carry, random_action):
        state, frame = carry
        action = jnp.where(use_expert, sim.expert_actions(frame).astype(jnp.int32),
                           random_action)
        state, frame = sim.step(state, action)
        return (state, frame), (sim.ram_images(state.game), frame)

    _, out = jax.lax.scan(body, (state, frame), table[:ticks])
    return out


def record(ticks: int = TICKS):
    """(RAM images uint8[games, ticks + 1, 0x400], frames as {field: [games, ticks + 1, ...]})
    of the golden games, the reset frame first."""
    resets = [sim.reset(jax.random.key(SEED + g), 1, level)
              for g, (level, _) in enumerate(GAMES)]
    state, frame = jax.tree.map(lambda *xs: jnp.concatenate(xs), *resets)
    use_expert = jnp.asarray([policy == "expert" for _, policy in GAMES])
    images, frames = _rollout(state, frame, jnp.asarray(random_actions(ticks, len(GAMES))),
                              ticks, use_expert)

    def with_reset(first, rest):
        return np.swapaxes(np.concatenate([np.asarray(first)[None], np.asarray(rest)]), 0, 1)

    images = with_reset(sim.ram_images(state.game), images)
    fields = {name: with_reset(getattr(frame, name), getattr(frames, name))
              for name in frame.__dataclass_fields__}
    return images, fields


def _digest(chunks) -> np.uint64:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(np.ascontiguousarray(chunk).tobytes())
    return np.frombuffer(h.digest()[:8], np.uint64)[0]


def digests(images, fields):
    """(RAM digests, frame digests), each uint64[games, ticks + 1]."""
    games, steps = images.shape[:2]
    ram = np.array([[_digest([images[g, t]]) for t in range(steps)] for g in range(games)])
    frame = np.array([[_digest([fields[name][g, t] for name in sorted(fields)])
                       for t in range(steps)] for g in range(games)])
    return ram, frame


def write(path: Path = GOLDEN_PATH) -> None:
    images, fields = record()
    ram, frame = digests(images, fields)
    ticks = np.asarray(CHECKPOINT_TICKS)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ram_digest=ram, frame_digest=frame, checkpoint_ticks=ticks,
                        checkpoint_ram=images[:, ticks], checkpoint_state=fields["state"][:, ticks],
                        start_levels=np.asarray([level for level, _ in GAMES]),
                        expert=np.asarray([policy == "expert" for _, policy in GAMES]))


def coverage(fields) -> dict[str, int]:
    """How much of the game the recording shows (counts over all games and ticks)."""
    gs, level = fields["gamestate"], fields["level"]
    return {"deaths": int(fields["done"].sum()),
            "zoom_ticks": int((gs == 0x20).sum()),
            "level_changes": int((np.diff(level, axis=1) != 0).sum()),
            "game_overs": int(((gs[:, 1:] == 0x08) & (gs[:, :-1] != 0x08)).sum()),
            "open_ticks": int((fields["is_open"] != 0).sum()),
            "max_level": int(level.max()) + 1}


if __name__ == "__main__":
    write()
    print(f"wrote {GOLDEN_PATH} ({GOLDEN_PATH.stat().st_size:,} bytes)")
