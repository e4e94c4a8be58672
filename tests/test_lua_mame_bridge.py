"""The production Lua client in real MAME against the real tempest-jax server.

MAME 0.251's `arb` driver runs a real 6502 with RAM where Tempest has it, from a cartridge this
test writes (an idle loop; no game ROM). tests/lua/mame_bridge_driver.lua writes simulator RAM
images into MAME's memory frame by frame and starts tempest_jax/lua/main.lua, which reads them
through MAME's memory API, sends frames over a MAME socket to the `GameServer`, and applies the
replies. The server's sink checks every frame byte for byte against the JAX extraction of the
same images (with the replies it sent echoed in the header); the driver checks every reply
reached the game ($0050 and the fire/zap inputs). No Tempest ROM is needed. A second run with
TEMPEST_OVERLAY=1 has display.lua draw on every video frame and must send the same bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from luarun import LUA_TESTS_DIR

pytest.importorskip("tempest_jax.sim")

from sim_ram_streams import first_difference, generate

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.config import ServerConfig
from tempest_jax.policy import PolicyOutput
from tempest_jax.server import GameServer
from tempest_jax.sim import extract as X
from tempest_jax.sim import ram_map as M

pytestmark = pytest.mark.timeout(600)

MAME = shutil.which("mame") or ("/usr/games/mame" if Path("/usr/games/mame").exists() else None)
DRIVER = LUA_TESTS_DIR / "mame_bridge_driver.lua"
MAME_LIMIT_S = 240


def arb_cartridge() -> bytes:
    """32 KiB for `arb`: at $A000 SEI, CLD, LDX #$FF, TXS, then a jump to itself (touches no
    RAM); NMI and IRQ vectors point at an RTI at $A010. The cart at $0000-$7FFF is mirrored to
    $8000-$FFFF, so $A000 is offset $2000."""
    cart = bytearray(0x8000)
    code = bytes([0x78, 0xD8, 0xA2, 0xFF, 0x9A, 0x4C, 0x05, 0xA0])
    cart[0x2000:0x2000 + len(code)] = code
    cart[0x2010] = 0x40
    for vector, address in ((0x7FFA, 0xA010), (0x7FFC, 0xA000), (0x7FFE, 0xA010)):
        cart[vector:vector + 2] = address.to_bytes(2, "little")
    return bytes(cart)


def scripted_joint(frame_counter):
    """The server's action for the client's frame number (1-based): all 44 in turn."""
    return (frame_counter - 1) % F.NUM_ACTIONS


@jax.jit
def expected_frames(images):
    """The JAX extraction of the image sequence with one carried state (one connection), each
    frame's cmd fields echoing the reply the scripted server sent for the frame before."""

    def body(state, image):
        carry, cmd = state
        carry, frame = X.extract(carry, image, cmd[0], cmd[1], cmd[2])
        joint = jnp.where(frame.done != 0, 0, scripted_joint(frame.frame))
        fire, zap, sp = F.decode_joint(joint)
        spinner = jnp.asarray(F.SPINNER_LEVELS_ARRAY, jnp.int32)[sp]
        return (carry, jnp.stack([fire, zap, spinner])), frame

    _, frames = jax.lax.scan(body, (X.initial_carry(), jnp.zeros(3, jnp.int32)), images)
    return frames


class ScriptedPolicy:
    def __call__(self, client_ids, batch):
        return PolicyOutput(joint=scripted_joint(batch.frame.astype(np.int64)),
                            is_expert=np.zeros(len(client_ids), bool))


class CheckingSink:
    """Compares every frame the server receives with the expected wire bytes, and keeps them."""

    def __init__(self, expected_wire: np.ndarray):
        self.expected = expected_wire
        self.frames = 0
        self.received: list[bytes] = []
        self.mismatches: list[str] = []
        self.first_at = self.last_at = 0.0

    def push(self, client_ids, batch, output):
        now = time.perf_counter()
        self.first_at = self.first_at or now
        self.last_at = now
        header = {name: batch.header[name] for name in P.HEADER_FIELDS[1:]}
        wire = np.frombuffer(P.encode_frames(header, batch.state), dtype=np.uint8).reshape(
            -1, P.FRAME_WIRE_SIZE)
        for row, frame_no in zip(wire, batch.frame):
            self.received.append(row.tobytes())
            index = int(frame_no) - 1
            if not 0 <= index < len(self.expected):
                self.mismatches.append(f"unexpected frame number {frame_no}")
                continue
            diff = first_difference(row.tobytes(), self.expected[index].tobytes())
            if diff:
                self.mismatches.append(f"frame {index}: {diff}")
            self.frames += 1

    def disconnect(self, client_id):
        pass


@dataclass
class BridgeRun:
    proc: subprocess.CompletedProcess
    sink: CheckingSink
    result: str  # the driver's summary


@pytest.fixture(scope="module")
def bridge_images():
    """Simulator RAM images and the wire frames the JAX extraction makes of them."""
    streams = generate([1, 4, 11, 17], 300, seed=3)
    # main.lua processes a frame only when $0003 moves: drop an image that repeats the
    # previous one's tick counter (possible where one game's sequence follows another's).
    images = streams.images
    keep = np.ones(len(images), bool)
    keep[1:] = images[1:, M.TIMECTR] != images[:-1, M.TIMECTR]
    images = images[keep]
    frames = expected_frames(jnp.asarray(images))
    fields = {name: np.asarray(getattr(frames, name)) for name in P.HEADER_FIELDS[1:]}
    expected = np.frombuffer(P.encode_frames(fields, np.asarray(frames.state)),
                             dtype=np.uint8).reshape(-1, P.FRAME_WIRE_SIZE)
    assert set(fields["gamestate"]) >= {0x04, 0x20}, "play and zoom frames"
    return images, expected


def run_bridge(tmp_path: Path, images: np.ndarray, expected: np.ndarray,
               overlay: bool) -> BridgeRun:
    """Real MAME (`arb`) running the driver and lua/main.lua against a GameServer."""
    (tmp_path / "images.bin").write_bytes(images.tobytes())
    (tmp_path / "cart.bin").write_bytes(arb_cartridge())
    home = tmp_path / "home"
    home.mkdir()
    sink = CheckingSink(expected)
    server = GameServer(ServerConfig(host="127.0.0.1", port=0), ScriptedPolicy(), sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin",
               "TEMPEST_SERVER": f"127.0.0.1:{server.address[1]}",
               "TEMPEST_ANY_SYSTEM": "1", "BRIDGE_IMAGES": str(tmp_path / "images.bin"),
               "BRIDGE_RESULT": str(tmp_path / "result.txt")}
        if overlay:
            env["TEMPEST_OVERLAY"] = "1"
        cmd = ["timeout", "-k", "5", str(MAME_LIMIT_S), MAME, "arb",
               "-cart", str(tmp_path / "cart.bin"), "-video", "none", "-sound", "none",
               "-nothrottle", "-skip_gameinfo", "-autoboot_script", str(DRIVER)]
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=MAME_LIMIT_S + 30)
    finally:
        server.stop()
        thread.join(timeout=10)
    result = (tmp_path / "result.txt").read_text() if (tmp_path / "result.txt").exists() else ""
    assert proc.returncode == 0, (
        f"MAME exited {proc.returncode} (124/137: timed out; 139: crashed)\n{result}\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert not sink.mismatches, (f"{len(sink.mismatches)} frames differ from the JAX "
                                 f"extraction; first: {sink.mismatches[0]}")
    assert sink.frames == len(images), (sink.frames, len(images), result)
    assert f"images {len(images)} processed {len(images)} sent {len(images)}" in result, result
    return BridgeRun(proc, sink, result)


@pytest.fixture(scope="module")
def plain_run(bridge_images, tmp_path_factory) -> BridgeRun:
    return run_bridge(tmp_path_factory.mktemp("bridge"), *bridge_images, overlay=False)


@pytest.mark.skipif(MAME is None, reason="MAME not installed (apt-get install mame)")
def test_production_lua_in_real_mame_talks_to_the_server(plain_run, bridge_images):
    images, _ = bridge_images
    sink = plain_run.sink
    assert "overlay" not in plain_run.result and "overlay on" not in plain_run.proc.stdout, \
        "the overlay is off by default"
    rate = (len(images) - 1) / max(sink.last_at - sink.first_at, 1e-9)
    print(f"\nreal MAME bridge: {len(images)} frames, {rate:,.0f} frames/s through the server")


@pytest.mark.skipif(MAME is None, reason="MAME not installed (apt-get install mame)")
def test_overlay_draws_in_real_mame_and_changes_no_byte(plain_run, bridge_images, tmp_path):
    """TEMPEST_OVERLAY=1: display.lua draws on every video frame (on MAME's UI container:
    `arb` has no screen) without an error, and the server receives the same bytes."""
    images, expected = bridge_images
    run = run_bridge(tmp_path, images, expected, overlay=True)
    assert "overlay on, drawn on the ui" in run.proc.stdout, run.proc.stdout[-2000:]
    match = re.search(r"overlay draws (\d+) errors (\d+) on ui", run.result)
    assert match, run.result
    draws, errors = int(match[1]), int(match[2])
    assert errors == 0 and draws >= len(images) - 1, run.result
    assert "overlay error" not in run.proc.stdout
    assert run.sink.received == plain_run.sink.received, "byte-identical frames"
