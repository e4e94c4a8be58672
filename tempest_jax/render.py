"""Game pictures from frames, in the arcade's vector style.

One renderer for every source: it draws from what every frame carries, the 195-value state
vector and the frame header (`protocol.HEADER_FIELDS`), so a simulator frame and a MAME frame
of the same game moment give the same picture.

What the frame gives and how it is drawn:
- the tube: its shape from the level (`level` in the header, 0-based; slot = level mod 16,
  then the game's shape order), checked against the 16 lane angles in the state (levels past
  98 draw a random shape: the angles then pick it). Closed tubes have 16 lanes, open ones 15.
  The rim is the near edge, the far end a copy shrunk toward the centre by perspective; the
  player's lane is edged in yellow; during a superzap the tube flashes white.
- enemies at their lane (relative lane + the header's player lane; fractional while a flipper
  flips) and depth, one glyph per type: flipper (red bow tie), pulsar (cyan zigzag), tanker
  (purple diamond; the inner diamond shows its cargo), spiker (green spiral), fuseball
  (many-coloured burst).
- spikes (green lines from the far end up to their tip), player shots (yellow), enemy shots
  (white), the player's claw on the rim (an orange burst once dead), and a small green mark
  outside the rim at the expert's target lane.
- score, level, lives (claws), the action taken, the game state when not in play, the frame
  counter and an optional label; optionally the network's top actions with their Q-values.

The same drawing calls also fill a display list (`Renderer.strokes`: palette, polylines, dots
and texts in pixels), which the dashboard's game view draws on a browser canvas: one picture,
whether Pillow or the browser draws it.

Drawing is Pillow's ImageDraw (C line drawing, a well-kept imaging library) on a palette
image: a few dozen line calls and short texts per frame stay far under a millisecond at
256×256 (`tempest-jax bench render` measures it). Palette colours are levels that an 8-bit
3-3-2 GIF palette holds exactly, so a GIF keeps them unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tempest_jax import features as F
from tempest_jax.protocol import HEADER_FIELDS
from tempest_jax.sim import shapes

# Palette indices and colours (red/green multiples of 36, blue multiples of 85).
BLACK, BLUE, DIM_BLUE, YELLOW, RED, GREEN, PURPLE, CYAN, WHITE, ORANGE, GRAY = range(11)
PALETTE = np.array([
    (0, 0, 0), (0, 0, 255), (0, 0, 170), (252, 252, 0), (252, 0, 0), (0, 252, 0),
    (180, 0, 255), (0, 252, 255), (252, 252, 255), (252, 144, 0), (144, 144, 170),
], dtype=np.uint8)
FLAT_PALETTE = PALETTE.ravel().tolist()
CSS_PALETTE = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in PALETTE.tolist()]


FLIPPER, PULSAR, TANKER, SPIKER, FUSEBALL = range(F.NUM_ENEMY_TYPES)
ENEMY_COLOUR = (RED, CYAN, PURPLE, GREEN, WHITE)
CARGO_COLOUR = (PURPLE, RED, CYAN, WHITE)  # tanker split: none, flippers, pulsars, fuseballs
FUSEBALL_COLOURS = (RED, YELLOW, GREEN, CYAN, PURPLE)
EXPLOSION_COLOURS = (ORANGE, YELLOW, RED, WHITE)

RIM_DEPTH, FAR_DEPTH = 0x10, 0xF0
PERSPECTIVE = 3.0  # the far end is drawn at 1 / (1 + 3) of the rim's size
TUBE_CENTRE = 0x80
TUBE_SPAN = FAR_DEPTH - RIM_DEPTH  # rim coordinates run 0x10..0xF0
TEXT_BAND = 13  # pixels above and below the tube for text (the font is 11 pixels high)
CHAR_WIDTH = 6
MIN_SIZE = 128
OPEN_LANES = F.NUM_LANES - 1  # an open tube has lanes 0..14

GAMESTATE_NAMES = {
    0x00: "NEW GAME", 0x02: "LEVEL START", 0x06: "DEATH", 0x08: "GAME OVER", 0x0A: "GET READY",
    0x0E: "NEXT LEVEL", 0x10: "HIGH SCORES", 0x12: "ENTER INITIALS", 0x14: "ATTRACT",
    0x16: "LEVEL SELECT", 0x18: "ZOOM IN", 0x1A: "ATTRACT", 0x1C: "LEVEL SELECT",
    0x1E: "GET READY", 0x20: "ZOOM", 0x22: "SERVICE", 0x24: "HIGH SCORE",
}
BURST_RAYS = 8


def _burst(radius: float, turn: int) -> list[tuple[float, float]]:
    """The centre then BURST_RAYS ray tips, half a ray apart for odd turns (it sparkles)."""
    angles = (np.arange(BURST_RAYS) + 0.5 * turn) * (2 * np.pi / BURST_RAYS)
    return [(0.5, 0.0), *zip(0.5 + radius * np.cos(angles), radius * np.sin(angles))]


# Glyphs as polylines in lane units: (a, b) is the point L + a·u + b·n, where L and R are the
# lane's two edges at the glyph's depth, u = R - L and n is u turned a quarter away from the
# tube's vanishing point (so b > 0 points out of the tube at the rim).
_spiral = np.linspace(0, 3 * np.pi, 13)
GLYPH_POINTS = {
    "flipper": [(0, 0.18), (1, -0.18), (1, 0.18), (0, -0.18), (0, 0.18)],
    "pulsar": [(0, 0), (1 / 6, 0.22), (2 / 6, -0.22), (3 / 6, 0.22), (4 / 6, -0.22),
               (5 / 6, 0.22), (1, 0)],
    "tanker": [(0.5, 0.4), (1, 0), (0.5, -0.4), (0, 0), (0.5, 0.4)],
    "spiker": list(zip(0.5 + 0.13 * _spiral / np.pi * np.cos(_spiral),
                       0.13 * _spiral / np.pi * np.sin(_spiral))),
    "unknown": [(0.32, 0.18), (0.68, 0.18), (0.68, -0.18), (0.32, -0.18), (0.32, 0.18)],
    "cargo": [(0.5, 0.2), (0.75, 0), (0.5, -0.2), (0.25, 0), (0.5, 0.2)],
    "claw": [(0, 0), (0.15, 0.3), (0.5, 0.12), (0.85, 0.3), (1, 0), (0.5, 0.07), (0, 0)],
    "shot": [(0.5, 0.08), (0.58, 0), (0.5, -0.08), (0.42, 0), (0.5, 0.08)],
    "enemy_shot": [(0.44, 0.06), (0.56, 0.06), (0.56, -0.06), (0.44, -0.06), (0.44, 0.06)],
    "mark": [(0.5, 0.36), (0.56, 0.3), (0.5, 0.24), (0.44, 0.3), (0.5, 0.36)],
    "fuseball0": _burst(0.35, 0), "fuseball1": _burst(0.35, 1),
    "explosion0": _burst(0.6, 0), "explosion1": _burst(0.6, 1),
}
GLYPH_NAMES = tuple(GLYPH_POINTS)
GLYPH = {name: i for i, name in enumerate(GLYPH_NAMES)}
GLYPH_LENGTH = np.array([len(GLYPH_POINTS[n]) for n in GLYPH_NAMES])
# One array (glyphs, points, 2), each polyline padded by repeating its last point.
GLYPH_TABLE = np.array([GLYPH_POINTS[n] + [GLYPH_POINTS[n][-1]] * (GLYPH_LENGTH.max() - len(
    GLYPH_POINTS[n])) for n in GLYPH_NAMES], dtype=np.float64)
ENEMY_GLYPH = (GLYPH["flipper"], GLYPH["pulsar"], GLYPH["tanker"], GLYPH["spiker"])
BURSTS = {GLYPH[f"{kind}{turn}"] for kind in ("fuseball", "explosion") for turn in (0, 1)}


def _scale_vector() -> np.ndarray:
    """Per state index, the denominator its normaliser divided by (1 where nothing here reads
    the value as a count): state · this gives the game's integers (fractions for rel lanes)."""
    scale = np.ones(F.STATE_SIZE)
    for name, top in (("lives", 6), ("player_depth", 255), ("zap_active", 19),
                      ("player_shot_depth", 256), ("player_shot_rel_lane", 15),
                      ("tube_angle", 15), ("spike", 255), ("enemy_rel_lane", 15),
                      ("enemy_depth", 255), ("enemy_shot_position", 256),
                      ("enemy_shot_rel_lane", 15)):
        scale[F.LAYOUT[name].slice] = top
    scale[F.LAYOUT["enemy_info"].slice] = np.tile([7, 1, 1, 1, 1, 3], F.NUM_ENEMY_SLOTS)
    return scale


STATE_SCALE = _scale_vector()


@dataclass(frozen=True)
class Scene:
    """A frame decoded into game units: what the picture shows."""

    shape: int
    is_open: bool
    player_lane: int
    player_depth: int
    alive: bool
    enemy_type: np.ndarray     # (k,) of the present enemies
    enemy_lane: np.ndarray     # (k,) absolute lane, fractional while flipping
    enemy_depth: np.ndarray    # (k,)
    enemy_cargo: np.ndarray    # (k,) tanker split: 0 none, 1 flippers, 2 pulsars, 3 fuseballs
    player_shot_lane: np.ndarray
    player_shot_depth: np.ndarray
    enemy_shot_lane: np.ndarray
    enemy_shot_depth: np.ndarray   # fractional (the shot's position has a low byte)
    spike_depth: np.ndarray    # (16,) depth of each lane's spike tip, 0 where none
    zapping: bool
    score: int
    level: int                 # 1-based
    lives: int
    gamestate: int
    frame: int
    expert_target: int         # lane, -1 for none
    fire: int
    zap: int
    spinner: int


def tube_shape(level: int, is_open: bool, angles: np.ndarray) -> int:
    """The shape index of the tube: the level's (0-based level mod 16, in the game's order),
    unless the lane angles fit exactly one other shape of the same openness (random shapes
    past level 98)."""
    return _tube_shape(level, is_open, np.asarray(angles, np.int64).tobytes())


@functools.lru_cache(maxsize=1024)
def _tube_shape(level: int, is_open: bool, angle_bytes: bytes) -> int:
    angles = np.frombuffer(angle_bytes, np.int64)
    by_level = int(shapes.SHAPE_OF_SLOT[level % shapes.NUM_SHAPES])
    fits = (angles == shapes.TUBE_ANGLE).all(axis=1) & ((shapes.OPEN_FLAG != 0) == is_open)
    if fits[by_level] or not fits.any():
        return by_level
    return int(np.flatnonzero(fits)[0])


def decode(state, header: Mapping) -> Scene:
    """A frame's state vector (195 values) and header fields as a Scene.

    `header` maps header field names to values (`frame_header` makes one from a
    protocol.Frame); `player_seg`, `is_open`, `level`, `score`, `gamestate`, `frame`,
    `expert_target` and the `cmd_*` fields are read. The action shown is the header's
    `cmd_*`, the action the game applied on the tick that made this frame."""
    units = np.asarray(state, dtype=np.float64) * STATE_SCALE
    counts = np.rint(units).astype(np.int64)
    player = int(header["player_seg"]) & 15
    is_open = bool(header["is_open"])
    level = int(header["level"])

    def block(name, values=counts):
        return values[F.LAYOUT[name].slice]

    def absolute(rel):
        lane = player + rel
        return np.clip(lane, 0, OPEN_LANES - 1) if is_open else np.mod(lane, F.NUM_LANES)

    enemy_depth = block("enemy_depth")
    on = enemy_depth > 0
    info = block("enemy_info").reshape(F.NUM_ENEMY_SLOTS, F.ENEMY_INFO_WIDTH)[on]
    shot_depth = block("player_shot_depth")
    shot_on = shot_depth > 0
    enemy_shot = block("enemy_shot_position", units)
    enemy_shot_on = enemy_shot > 0
    spike = block("spike")
    zap_timer = counts[F.LAYOUT["zap_active"].start]
    return Scene(
        shape=tube_shape(level, is_open, block("tube_angle")), is_open=is_open,
        player_lane=player, player_depth=int(counts[F.LAYOUT["player_depth"].start]),
        alive=bool(state[F.LAYOUT["alive"].start] > 0.5),
        enemy_type=info[:, 0], enemy_lane=absolute(block("enemy_rel_lane", units)[on]),
        enemy_depth=enemy_depth[on], enemy_cargo=info[:, 5],
        player_shot_lane=absolute(block("player_shot_rel_lane")[shot_on]),
        player_shot_depth=shot_depth[shot_on],
        enemy_shot_lane=absolute(block("enemy_shot_rel_lane")[enemy_shot_on]),
        enemy_shot_depth=enemy_shot[enemy_shot_on],
        spike_depth=np.where(spike > 0, 255 - spike, 0),
        # The zap timer runs 1..18; 19 stands for "19 or more", the zapper switched off.
        zapping=bool(0 < zap_timer < 19),
        score=int(header["score"]), level=level + 1,
        lives=int(counts[F.LAYOUT["lives"].start]), gamestate=int(header["gamestate"]),
        frame=int(header["frame"]), expert_target=int(header["expert_target"]),
        fire=int(header["cmd_fire"]), zap=int(header["cmd_zap"]),
        spinner=int(header["cmd_spinner"]))


def frame_header(frame) -> dict:
    """The header fields of a protocol.Frame (or any object with those attributes)."""
    return {name: getattr(frame, name) for name in HEADER_FIELDS[1:]}


def action_label(joint: int) -> str:
    """A joint action in five characters: fire (F), zap (Z), spinner level, e.g. `FZ+12`."""
    fire, zap, sp = F.decode_joint(int(joint))
    return f"{'F' if fire else '-'}{'Z' if zap else '-'}{F.SPINNER_LEVELS[int(sp)]:+3d}"


@dataclass(frozen=True)
class _Tube:
    """One shape's geometry in pixels."""

    rim: np.ndarray        # (16, 2)
    vanish: np.ndarray     # (2,)
    far: np.ndarray        # (16, 2)
    centres: np.ndarray    # (16, 2) lane centres on the rim
    far_centres: np.ndarray  # (16, 2) ... and at the far end
    rim_line: list         # flat polyline, closed for closed shapes
    far_line: list
    spokes: list           # (x0, y0, x1, y1) per edge


class Renderer:
    """Draws frames at `size`×`size` pixels. Keeps per-shape geometry between frames."""

    def __init__(self, size: int = 256):
        if size < MIN_SIZE or size % 2:
            raise ValueError(f"picture size must be even and at least {MIN_SIZE}, got {size}")
        self.size = size
        self.font = ImageFont.load_default_imagefont()
        self.scale = (size - 2 * TEXT_BAND) / TUBE_SPAN
        self._tubes: dict[tuple[int, bool], _Tube] = {}

    # -- geometry -------------------------------------------------------------------------

    def pixels(self, x, y) -> np.ndarray:
        """Tube coordinates (0x10..0xF0, +y up) as pixels (…, 2) (+y down)."""
        return np.stack(np.broadcast_arrays(
            (np.asarray(x) - TUBE_CENTRE) * self.scale + self.size / 2,
            self.size / 2 - (np.asarray(y) - TUBE_CENTRE) * self.scale), axis=-1).astype(
            np.float64)

    def tube(self, shape: int, is_open: bool) -> _Tube:
        """A shape's rim, far end and spokes in pixels. The far end is the rim shrunk toward
        the vanishing point below the eye."""
        key = (shape, is_open)
        if key not in self._tubes:
            rim = self.pixels(shapes.TUBE_X[shape], shapes.TUBE_Y[shape])
            vanish = self.pixels(TUBE_CENTRE, shapes.CAMERA_Y[shape])
            far = vanish + (rim - vanish) / (1 + PERSPECTIVE)
            ring = (lambda p: p) if is_open else (lambda p: np.vstack([p, p[:1]]))
            centres = (rim + np.roll(rim, -1, axis=0)) / 2
            self._tubes[key] = _Tube(rim, vanish, far, centres,
                                     vanish + (centres - vanish) / (1 + PERSPECTIVE),
                                     ring(rim).ravel().tolist(),
                                     ring(far).ravel().tolist(),
                                     [(*a, *b) for a, b in zip(rim.tolist(), far.tolist())])
        return self._tubes[key]

    def edge(self, scene: Scene, position) -> np.ndarray:
        """Rim points at fractional edge positions (lane i spans edges i and i + 1)."""
        rim = self.tube(scene.shape, scene.is_open).rim
        position = np.asarray(position, np.float64)
        if scene.is_open:
            position = np.clip(position, 0, F.NUM_LANES - 1)
        else:
            position = np.mod(position, F.NUM_LANES)
        low = np.minimum(position.astype(np.int64), F.NUM_LANES - 1)
        frac = (position - low)[..., None]
        high = np.minimum(low + 1, F.NUM_LANES - 1) if scene.is_open else (low + 1) % F.NUM_LANES
        return rim[low] * (1 - frac) + rim[high] * frac

    def at_depth(self, scene: Scene, points: np.ndarray, depth) -> np.ndarray:
        """Rim points (…, 2) moved down the tube to `depth` (…,) by perspective."""
        vanish = self.tube(scene.shape, scene.is_open).vanish
        t = np.clip((np.asarray(depth, np.float64) - RIM_DEPTH) / TUBE_SPAN, 0.0, 1.1)
        return vanish + (points - vanish) / (1.0 + PERSPECTIVE * t)[..., None]

    def place(self, scene: Scene, glyphs, lanes, depths) -> np.ndarray:
        """Pixel polylines (k, points, 2) of glyph indices `glyphs` (k,) on lanes (k,) at
        depths (k,); each padded to the longest glyph."""
        lanes = np.asarray(lanes, np.float64)
        left = self.at_depth(scene, self.edge(scene, lanes), depths)
        right = self.at_depth(scene, self.edge(scene, lanes + 1), depths)
        u = right - left
        n = np.stack([u[:, 1], -u[:, 0]], axis=1)
        inward = np.sum(n * ((left + right) / 2 - self.tube(scene.shape, scene.is_open).vanish),
                        axis=1) < 0
        n[inward] *= -1
        table = GLYPH_TABLE[np.asarray(glyphs, np.int64)]
        return left[:, None] + table[..., :1] * u[:, None] + table[..., 1:] * n[:, None]

    # -- drawing --------------------------------------------------------------------------

    def draw(self, state, header: Mapping, action: int | None = None, q_values=None,
             label: str = "") -> Image.Image:
        """The picture of one frame as a palette image (`PALETTE`).

        `action`, when given, is the joint action chosen on this frame (shown instead of the
        header's `cmd_*`, which is the action that led to it); `q_values` (44,) adds the
        network's top three actions; `label` names the player at the bottom right."""
        image = Image.new("P", (self.size, self.size), BLACK)
        image.putpalette(FLAT_PALETTE)
        self._paint(ImageDraw.Draw(image), state, header, action, q_values, label)
        return image

    def strokes(self, state, header: Mapping, action: int | None = None, q_values=None,
                label: str = "") -> dict:
        """The same picture as a display list (JSON-ready): `size`, `palette` (CSS colours),
        `lines` [[colour, [x0, y0, x1, y1, ...]], ...], `dots` [[colour, x, y], ...] and
        `texts` [[colour, x, y, text], ...] (the top left of an 11-pixel line), in the order
        drawn, in pixels of a `size`×`size` picture."""
        pen = _Recorder()
        self._paint(pen, state, header, action, q_values, label)
        return {"size": self.size, "palette": CSS_PALETTE, "lines": pen.lines, "dots": pen.dots,
                "texts": pen.texts}

    def _paint(self, pen, state, header: Mapping, action, q_values, label: str) -> None:
        scene = decode(state, header)
        if action is not None:
            fire, zap, sp = F.decode_joint(int(action))
            scene = replace(scene, fire=int(fire), zap=int(zap),
                            spinner=F.SPINNER_LEVELS[int(sp)])
        self._tube(pen, scene)
        self._spikes(pen, scene)
        self._objects(pen, scene)
        self._text(pen, scene, q_values, action, label)

    def rgb(self, state, header: Mapping, action: int | None = None, q_values=None,
            label: str = "") -> np.ndarray:
        """The picture as uint8 (size, size, 3)."""
        return np.asarray(self.draw(state, header, action, q_values, label).convert("RGB"))

    def _tube(self, pen: ImageDraw.ImageDraw, scene: Scene) -> None:
        tube = self.tube(scene.shape, scene.is_open)
        colour, far_colour = (WHITE, WHITE) if scene.zapping else (BLUE, DIM_BLUE)
        pen.line(tube.far_line, fill=far_colour)
        for spoke in tube.spokes:
            pen.line(spoke, fill=far_colour)
        pen.line(tube.rim_line, fill=colour)
        lane = scene.player_lane
        if not scene.is_open or lane < OPEN_LANES:
            pen.line(tube.spokes[lane], fill=YELLOW)
            pen.line(tube.spokes[(lane + 1) % F.NUM_LANES], fill=YELLOW)

    def _spikes(self, pen: ImageDraw.ImageDraw, scene: Scene) -> None:
        lanes = np.flatnonzero(scene.spike_depth[:OPEN_LANES if scene.is_open else None])
        if not len(lanes):
            return
        tube = self.tube(scene.shape, scene.is_open)
        tips = self.at_depth(scene, tube.centres[lanes], scene.spike_depth[lanes])
        for base, tip in zip(tube.far_centres[lanes].tolist(), tips.tolist()):
            pen.line((*base, *tip), fill=GREEN)
            pen.point(tip, fill=WHITE)

    def _objects(self, pen: ImageDraw.ImageDraw, scene: Scene) -> None:
        """Enemies, shots, the player and the expert's mark: placed in one batch, drawn in
        that order."""
        glyphs, lanes, depths, colours = [], [], [], []

        def add(glyph, lane, depth, colour):
            glyphs.append(glyph)
            lanes.append(lane)
            depths.append(depth)
            colours.append(colour)

        turn = scene.frame % 2
        for kind, lane, depth, cargo in zip(scene.enemy_type.tolist(), scene.enemy_lane.tolist(),
                                            scene.enemy_depth.tolist(),
                                            scene.enemy_cargo.tolist()):
            if kind == FUSEBALL:
                add(GLYPH[f"fuseball{turn}"], lane, depth, FUSEBALL_COLOURS)
                continue
            known = kind < len(ENEMY_GLYPH)
            add(ENEMY_GLYPH[kind] if known else GLYPH["unknown"], lane, depth,
                ENEMY_COLOUR[kind] if known else WHITE)
            if kind == TANKER and 0 < cargo < len(CARGO_COLOUR):
                add(GLYPH["cargo"], lane, depth, CARGO_COLOUR[cargo])
        for lane, depth in zip(scene.player_shot_lane.tolist(), scene.player_shot_depth.tolist()):
            add(GLYPH["shot"], lane, depth, YELLOW)
        for lane, depth in zip(scene.enemy_shot_lane.tolist(), scene.enemy_shot_depth.tolist()):
            add(GLYPH["enemy_shot"], lane, depth, WHITE)
        if 0 < scene.player_depth < FAR_DEPTH:
            if scene.alive:
                add(GLYPH["claw"], scene.player_lane, scene.player_depth, YELLOW)
            else:
                add(GLYPH[f"explosion{turn}"], scene.player_lane, scene.player_depth,
                    EXPLOSION_COLOURS)
        if 0 <= scene.expert_target < (OPEN_LANES if scene.is_open else F.NUM_LANES):
            add(GLYPH["mark"], scene.expert_target, RIM_DEPTH, GREEN)
        if not glyphs:
            return
        lines = self.place(scene, glyphs, lanes, depths)
        for glyph, points, colour in zip(glyphs, lines, colours):
            if glyph in BURSTS:
                centre, *tips = points[:BURST_RAYS + 1].tolist()
                for ray, tip in enumerate(tips):
                    pen.line((*centre, *tip), fill=colour[ray % len(colour)])
            else:
                pen.line(points[:GLYPH_LENGTH[glyph]].ravel().tolist(), fill=colour)

    def _text(self, pen: ImageDraw.ImageDraw, scene: Scene, q_values, action,
              label: str) -> None:
        size, font, bottom = self.size, self.font, self.size - TEXT_BAND + 1

        def write(x, y, text, colour):
            pen.text((x, y), text, fill=colour, font=font)

        def centred(y, text, colour):
            write((size - CHAR_WIDTH * len(text)) // 2, y, text, colour)

        write(2, 1, f"SCORE {scene.score}", WHITE)
        centred(1, f"LEVEL {scene.level}", WHITE)
        for i in range(min(scene.lives, 6)):
            x = size - 10 * (i + 1)
            pen.line((x, 10, x + 2, 3, x + 4, 7, x + 6, 3, x + 8, 10, x + 4, 8, x, 10),
                     fill=YELLOW)
        write(2, bottom, f"{'FIRE' if scene.fire else '----'} {'ZAP' if scene.zap else '---'}"
                         f" SPIN{scene.spinner:+3d}", YELLOW)
        right = f"{label} #{scene.frame}" if label else f"#{scene.frame}"
        write(size - 2 - CHAR_WIDTH * len(right), bottom, right, GRAY)
        if scene.gamestate != F.GAMESTATE_PLAYING:
            centred(size // 2 - 6, GAMESTATE_NAMES.get(scene.gamestate,
                                                       f"STATE {scene.gamestate:02X}"), WHITE)
        if q_values is not None:
            q = np.asarray(q_values, np.float64)
            for row, joint in enumerate(np.argsort(-q, kind="stable")[:3].tolist()):
                colour = YELLOW if joint == action else GRAY
                write(2, TEXT_BAND + 11 * row, f"{action_label(joint)} {q[joint]:7.2f}", colour)


class _Recorder:
    """Records ImageDraw's `line`, `point` and `text` calls (as `_paint` makes them)."""

    def __init__(self):
        self.lines: list = []
        self.dots: list = []
        self.texts: list = []

    def line(self, xy, fill: int) -> None:
        self.lines.append([fill, [float(v) for v in xy]])

    def point(self, xy, fill: int) -> None:
        self.dots.append([fill, float(xy[0]), float(xy[1])])

    def text(self, xy, text: str, fill: int, font=None) -> None:
        self.texts.append([fill, int(xy[0]), int(xy[1]), text])


def render(state, header: Mapping, size: int = 256, **options) -> np.ndarray:
    """One frame as uint8 (size, size, 3) RGB (see `Renderer.draw` for the options)."""
    return Renderer(size).rgb(state, header, **options)
