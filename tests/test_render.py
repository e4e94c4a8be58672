"""The renderer draws known frames where the game puts things.

Frames come from RAM images run through the real extraction (the same bytes a MAME client
sends), so the test covers the renderer's reading of the normalised state too. Pictures are
saved as PNGs in the test's temporary directory.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax import render as R
from tempest_jax.sim import extract as X
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import shapes

pytestmark = pytest.mark.timeout(300)

SIZE = 256
extract_one = jax.jit(X.extract)


def ram_image(level0: int, player_lane: int, enemies=(), spikes=None, lives=3,
              score_bcd=(0x34, 0x12, 0x00), zap_timer=0, player_shots=()) -> np.ndarray:
    """A RAM image of a real game in play on 0-based level `level0`. `enemies`: (slot, type,
    lane, depth); `spikes`: {lane: tip depth}; `player_shots`: (slot, lane, depth)."""
    ram = np.zeros(M.RAM_SIZE, np.uint8)
    shape = shapes.SHAPE_OF_SLOT[level0 % 16]
    ram[M.GAMESTATE], ram[M.GAME_MODE] = F.GAMESTATE_PLAYING, 0xC0
    ram[M.CURLEVEL] = ram[M.P1_LEVEL] = level0
    ram[M.OPEN_LEVEL] = shapes.OPEN_FLAG[shape]
    ram[M.CURTUBE] = shape
    ram[M.TUBE_X:M.TUBE_X + 16] = shapes.TUBE_X[shape]
    ram[M.TUBE_Y:M.TUBE_Y + 16] = shapes.TUBE_Y[shape]
    ram[M.TUBE_ANGLE:M.TUBE_ANGLE + 16] = shapes.TUBE_ANGLE[shape]
    ram[M.PLAYER_SEG], ram[M.PLAYER_STATE] = player_lane, (player_lane + 1) & 15
    ram[M.PLAYER_ALONG], ram[M.POSITION] = 0x10, player_lane * 16 + 8
    ram[M.P1_LIVES] = lives
    ram[M.P1_SCORE_L], ram[M.P1_SCORE_M], ram[M.P1_SCORE_H] = score_bcd
    ram[M.ZAP_RUNNING] = zap_timer
    for slot, kind, lane, depth in enemies:
        ram[M.ENEMY_TYPE_INFO + slot], ram[M.ENEMY_SEG + slot] = kind, lane
        ram[M.ENEMY_ALONG + slot] = depth
    for lane, depth in (spikes or {}).items():
        ram[M.LANE_SPIKE_HEIGHT + lane] = depth
    for slot, lane, depth in player_shots:
        ram[M.PLAYER_SHOT_SEGMENTS + slot], ram[M.PLAYER_SHOT_POSITIONS + slot] = lane, depth
    return ram


def frame_of(ram: np.ndarray) -> P.Frame:
    """The frame a client sends for this RAM image, through the wire format and back."""
    _, frame = extract_one(X.initial_carry(), ram)
    frame = jax.device_get(frame)
    header = {name: np.asarray([getattr(frame, name)]) for name in P.HEADER_FIELDS[1:]}
    wire = P.encode_frames(header, np.asarray(frame.state)[None])
    return P.parse_frame(wire)


def picture(frame: P.Frame, path=None, **options) -> np.ndarray:
    """Palette indices (SIZE, SIZE) of the frame's picture, saved as a PNG when `path`."""
    image = R.Renderer(SIZE).draw(frame.state, R.frame_header(frame), **options)
    if path is not None:
        image.convert("RGB").save(path)
    return np.asarray(image)


def colour_near(indices: np.ndarray, point, colour: int, reach: int = 1) -> bool:
    """Whether `colour` is drawn within `reach` pixels of `point` (lines land on the nearest
    pixel of their exact path)."""
    x, y = (round(float(v)) for v in point)
    window = indices[max(y - reach, 0): y + reach + 1, max(x - reach, 0): x + reach + 1]
    return bool((window == colour).any())


def angle(v) -> float:
    return float(np.arctan2(v[1], v[0]))


def test_level_1_circle_with_a_flipper(tmp_path):
    frame = frame_of(ram_image(0, player_lane=12, enemies=[(0, R.FLIPPER, 2, 0x80)]))
    indices = picture(frame, tmp_path / "circle_flipper.png")
    renderer = R.Renderer(SIZE)
    tube = renderer.tube(0, False)
    rim = tube.rim

    # The tube: the circle's 16 rim points on a circle around the picture's centre, point 0
    # at the right, point 4 at the top (+y is up in the game); every rim segment is drawn,
    # including the one that closes the circle (15 -> 0).
    assert rim[0, 0] > SIZE - R.TEXT_BAND - 4 and rim[0, 1] == SIZE / 2
    assert rim[4, 1] < R.TEXT_BAND + 4 and rim[4, 0] == SIZE / 2
    np.testing.assert_allclose(np.hypot(*(rim - SIZE / 2).T), (SIZE / 2 - R.TEXT_BAND), rtol=0.03)
    for lane in range(16):
        if lane in (12,):
            continue
        mid = (rim[lane] + rim[(lane + 1) % 16]) / 2
        assert colour_near(indices, mid, R.BLUE), f"rim of lane {lane}"
    # The player's lane is edged in yellow (the two spokes of lane 12).
    for edge in (12, 13):
        assert colour_near(indices, (rim[edge] + tube.far[edge]) / 2, R.YELLOW)

    # The flipper: red, inside lane 2's wedge as seen from the vanishing point, at the depth
    # 0x80 shrinks lanes to: 1 / (1 + 3 · (0x80 - 0x10) / 0xE0) = 0.4 of the rim.
    red = np.argwhere(indices == R.RED)[:, ::-1].astype(float)  # (x, y)
    assert len(red) > 10
    seen = red - tube.vanish
    low, high = sorted((angle(rim[2] - tube.vanish), angle(rim[3] - tube.vanish)))
    angles = np.arctan2(seen[:, 1], seen[:, 0])
    assert ((angles > low - 0.05) & (angles < high + 0.05)).all(), "red only in lane 2"
    lane_mid = (rim[2] + rim[3]) / 2 - tube.vanish
    ratio = np.hypot(*seen.mean(axis=0)) / np.hypot(*lane_mid)
    assert 0.35 < ratio < 0.45, ratio

    # The claw: yellow just outside the rim of lane 12 (the bottom), nothing yellow at the rim
    # of the lane opposite.
    outward = (rim[12] + rim[13]) / 2 + (((rim[12] + rim[13]) / 2 - tube.vanish)
                                        / np.hypot(*((rim[12] + rim[13]) / 2 - tube.vanish))) * 3
    assert colour_near(indices, outward, R.YELLOW, reach=2)
    assert not colour_near(indices, (rim[4] + rim[5]) / 2, R.YELLOW, reach=3)

    # Score, level and lives are written in the top band, the action in the bottom one.
    assert (indices[:R.TEXT_BAND, :60] == R.WHITE).sum() > 30
    assert (indices[:R.TEXT_BAND, -32:] == R.YELLOW).sum() > 20, "three claws for lives"
    assert (indices[-R.TEXT_BAND:, :100] == R.YELLOW).sum() > 30


def test_open_level_with_spikes(tmp_path):
    # Level 8 is the V, an open tube: lanes 0..14, no segment from point 15 back to point 0.
    spikes = {3: 0x40, 10: 0xC0}
    frame = frame_of(ram_image(7, player_lane=7, spikes=spikes))
    indices = picture(frame, tmp_path / "v_spikes.png")
    renderer = R.Renderer(SIZE)
    tube = renderer.tube(7, True)
    rim = tube.rim
    scene = R.decode(frame.state, R.frame_header(frame))
    assert scene.shape == 7 and scene.is_open
    assert {int(i): int(d) for i, d in enumerate(scene.spike_depth) if d} == spikes

    assert not colour_near(indices, (rim[15] + rim[0]) / 2, R.BLUE, reach=2), "no closing rim"
    for lane in range(15):
        assert colour_near(indices, (rim[lane] + rim[lane + 1]) / 2, R.BLUE), f"rim {lane}"

    def lane_centre(lane, depth):
        centre = (rim[lane] + rim[lane + 1]) / 2
        return tube.vanish + (centre - tube.vanish) / (
            1 + R.PERSPECTIVE * (depth - R.RIM_DEPTH) / R.TUBE_SPAN)

    # A spike is a green line up its lane from the far end to its tip, and nothing nearer.
    for lane, tip in spikes.items():
        assert colour_near(indices, lane_centre(lane, (tip + R.FAR_DEPTH) / 2), R.GREEN)
        assert not colour_near(indices, lane_centre(lane, max(tip - 0x30, 0x10)), R.GREEN,
                               reach=2)
    for lane in (0, 6, 14):
        assert not colour_near(indices, lane_centre(lane, 0xA0), R.GREEN, reach=2)
    # The claw on lane 7, the bottom of the V.
    outward = (rim[7] + rim[8]) / 2
    outward = outward + (outward - tube.vanish) / np.hypot(*(outward - tube.vanish)) * 3
    assert colour_near(indices, outward, R.YELLOW, reach=2)


def test_each_enemy_type_and_shots_have_their_colours(tmp_path):
    enemies = [(0, R.FLIPPER, 1, 0x60), (1, R.PULSAR, 4, 0x60), (2, R.TANKER, 7, 0x60),
               (3, R.SPIKER, 10, 0x60), (4, R.FUSEBALL, 13, 0x60)]
    frame = frame_of(ram_image(0, player_lane=0, enemies=enemies,
                               player_shots=[(0, 0, 0x40)]))
    indices = picture(frame, tmp_path / "enemies.png")
    scene = R.decode(frame.state, R.frame_header(frame))
    assert scene.enemy_type.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(scene.enemy_lane, [1, 4, 7, 10, 13], atol=1e-5)
    assert scene.enemy_depth.tolist() == [0x60] * 5
    assert scene.player_shot_lane.tolist() == [0] and scene.player_shot_depth.tolist() == [0x40]
    tube = R.Renderer(SIZE).tube(0, False)
    # The fuseball's rays take several colours around lane 13; away from it each type's
    # colour lies only in its own lane.
    centre = tube.vanish + ((tube.rim[13] + tube.rim[14]) / 2 - tube.vanish) / (
        1 + R.PERSPECTIVE * (0x60 - 0x10) / R.TUBE_SPAN)
    x, y = centre.round().astype(int)
    around = set(np.unique(indices[y - 6: y + 7, x - 6: x + 7]).tolist())
    elsewhere = indices.copy()
    elsewhere[y - 8: y + 9, x - 8: x + 9] = R.BLACK
    # ... and away from the expert's green mark outside the rim.
    mark = R.Renderer(SIZE).place(scene, [R.GLYPH["mark"]], [scene.expert_target],
                                  [R.RIM_DEPTH])[0].mean(axis=0).round().astype(int)
    elsewhere[mark[1] - 6: mark[1] + 7, mark[0] - 6: mark[0] + 7] = R.BLACK
    for kind, colour in ((R.FLIPPER, R.RED), (R.PULSAR, R.CYAN), (R.TANKER, R.PURPLE),
                         (R.SPIKER, R.GREEN)):
        pixels = np.argwhere(elsewhere == colour)[:, ::-1] - tube.vanish
        lane = enemies[kind][2]
        lane_dir = (tube.rim[lane] + tube.rim[lane + 1]) / 2 - tube.vanish
        cos = pixels @ lane_dir / np.hypot(*pixels.T) / np.hypot(*lane_dir)
        assert len(pixels) > 5 and (cos > 0.95).all(), f"type {kind} in lane {lane}"
    assert {R.RED, R.YELLOW, R.CYAN} <= around


def test_simulator_and_wire_frames_give_the_same_picture():
    """A MAME frame is the wire form of the same values: its picture is identical."""
    _, frame = extract_one(X.initial_carry(), ram_image(
        4, player_lane=3, enemies=[(0, R.TANKER, 9, 0x90)], spikes={1: 0xB0}))
    frame = jax.device_get(frame)
    header = {name: getattr(frame, name) for name in P.HEADER_FIELDS[1:]}
    direct = R.render(np.asarray(frame.state), header)
    wire = R.render(*(lambda f: (f.state, R.frame_header(f)))(frame_of(ram_image(
        4, player_lane=3, enemies=[(0, R.TANKER, 9, 0x90)], spikes={1: 0xB0}))))
    assert direct.shape == (SIZE, SIZE, 3) and direct.dtype == np.uint8
    np.testing.assert_array_equal(direct, wire)


def test_overlays_zap_flash_and_q_values(tmp_path):
    base = frame_of(ram_image(0, player_lane=12))
    zapping = frame_of(ram_image(0, player_lane=12, zap_timer=5))
    rim = R.Renderer(SIZE).tube(0, False).rim
    mid = (rim[5] + rim[6]) / 2
    assert colour_near(picture(base), mid, R.BLUE)
    assert colour_near(picture(zapping, tmp_path / "zap.png"), mid, R.WHITE)

    q = np.linspace(-1, 1, F.NUM_ACTIONS)
    best = F.NUM_ACTIONS - 1
    plain = picture(base, action=best)
    annotated = picture(base, tmp_path / "q.png", action=best, q_values=q, label="NETWORK")
    rows = slice(R.TEXT_BAND, R.TEXT_BAND + 33)
    assert not np.isin(plain[rows, :80], (R.YELLOW, R.GRAY)).any()
    assert (annotated[rows, :80] == R.YELLOW).sum() > 20, "the chosen action's row"
    assert (annotated[rows, :80] == R.GRAY).sum() > 40, "two more rows"
    assert R.action_label(best) == "FZ-12" and R.action_label(0) == "-- +0"
    assert (annotated[-R.TEXT_BAND:, -80:] == R.GRAY).sum() > (
        plain[-R.TEXT_BAND:, -80:] == R.GRAY).sum(), "the label"


def test_tube_shape_follows_the_angles_past_level_98():
    assert R.tube_shape(0, False, shapes.TUBE_ANGLE[0]) == 0
    assert R.tube_shape(98, False, shapes.TUBE_ANGLE[12]) == 12, "a random shape"
    assert R.tube_shape(17, False, np.zeros(16, int)) == 1, "unloaded angles: the level's"
    assert R.tube_shape(7, True, shapes.TUBE_ANGLE[7]) == 7


def test_renderer_rejects_odd_or_tiny_sizes():
    for size in (100, 255):
        with pytest.raises(ValueError, match="even and at least"):
            R.Renderer(size)


def test_the_display_list_is_the_same_picture():
    """The dashboard's game view draws `strokes`: replayed with Pillow it is `draw`'s picture."""
    frame = frame_of(ram_image(4, player_lane=3, enemies=[(0, R.TANKER, 9, 0x90),
                                                          (1, R.FLIPPER, 5, 0x40)],
                               spikes={1: 0xB0}))
    renderer = R.Renderer(SIZE)
    header, q = R.frame_header(frame), np.linspace(-1, 1, F.NUM_ACTIONS)
    strokes = renderer.strokes(frame.state, header, action=7, q_values=q, label="G0")
    assert strokes["size"] == SIZE and len(strokes["palette"]) == len(R.PALETTE)
    replayed = Image.new("P", (SIZE, SIZE), R.BLACK)
    replayed.putpalette(R.FLAT_PALETTE)
    pen = ImageDraw.Draw(replayed)
    for colour, points in strokes["lines"]:
        pen.line(points, fill=colour)
    for colour, x, y in strokes["dots"]:
        pen.point((x, y), fill=colour)
    for colour, x, y, text in strokes["texts"]:
        pen.text((x, y), text, fill=colour, font=renderer.font)
    drawn = np.asarray(renderer.draw(frame.state, header, action=7, q_values=q, label="G0"))
    assert (drawn != R.BLACK).sum() > 500
    np.testing.assert_array_equal(np.asarray(replayed), drawn)
    assert ["LEVEL 5" in text for *_, text in strokes["texts"]].count(True) == 1
