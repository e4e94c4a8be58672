"""The 16 tube shapes: rim points, lane angles, open flags, and the level → shape order.

Tables from `reference/game_rules_world.md` §1 (indexed by shape index, not level).
"""

from __future__ import annotations

import numpy as np

NUM_SHAPES = 16


def _hex_rows(text: str) -> np.ndarray:
    return np.array([[int(v, 16) for v in row.split()] for row in text.strip().splitlines()],
                    dtype=np.int32)


TUBE_X = _hex_rows("""
F0 E7 CF AA 80 56 31 19 10 19 31 56 80 AA CF E7
F0 F0 F0 B8 80 48 10 10 10 10 10 48 80 B8 F0 F0
F0 F0 B8 B8 80 48 48 10 10 10 48 48 80 B8 B8 F0
EC D5 B1 90 70 4F 2B 14 14 2B 4F 70 90 B1 D5 EC
F0 C0 A0 94 6C 60 40 10 10 40 60 6C 94 A0 C0 F0
D9 C2 AC 97 80 69 52 3C 27 10 35 5A 80 A6 CA F0
EA E0 9C 80 64 20 16 50 16 20 64 80 9C E0 EA B0
10 1E 2C 3A 48 56 64 70 90 9E AC BA C8 D6 E4 F0
10 1E 2D 3C 4B 5A 69 78 87 96 A5 B4 C3 D2 E1 F0
10 10 10 10 16 29 46 69 97 BA D7 EA F0 F0 F0 F0
10 24 30 36 3E 49 5A 75 94 A4 AC BA DA E2 EA F0
80 70 48 20 10 20 48 70 80 90 B8 E0 F0 E0 B8 90
DA A4 87 80 79 5C 26 10 10 20 48 80 B8 E0 F0 F0
10 10 30 30 50 50 70 70 90 90 B0 B0 D0 D0 F0 F0
B0 80 50 47 18 30 18 47 50 80 B0 B9 E8 D4 E8 B9
10 1E 21 28 3C 55 66 73 8D 9A AB C4 D8 DF E2 F0
""")

TUBE_Y = _hex_rows("""
80 AA CF E7 F0 E7 CF AA 80 56 31 19 10 19 31 56
80 B8 F0 F0 F0 F0 F0 B8 80 48 10 10 10 10 10 48
80 B8 B8 F0 F0 F0 B8 B8 80 48 48 10 10 10 48 48
94 B0 B8 A7 A7 B8 B0 94 6C 50 48 59 59 48 50 6C
96 A3 C5 F0 F0 C5 A3 96 6A 5D 3B 10 10 3B 5D 6A
3D 6A 97 C4 F0 C4 97 6A 3D 10 10 10 10 10 10 10
A0 E0 EA B0 EA E0 A0 80 60 20 16 50 16 20 60 80
F0 D0 B0 90 70 50 30 10 10 30 50 70 90 B0 D0 F0
40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40
F0 CB A6 80 5C 39 20 12 12 20 39 5C 80 A6 CB F0
C0 A6 8A 6A 4A 2F 14 24 20 39 59 75 72 90 B0 D0
80 57 48 57 80 A9 BA A9 80 57 48 57 80 A9 BA A9
E4 E8 B7 80 B7 E8 E4 B2 7A 47 20 10 20 47 7A B2
90 70 70 50 50 30 30 10 10 30 30 50 50 70 70 90
E6 D0 E6 B9 AE 80 52 47 14 30 14 47 52 80 AE B9
7E 6A 51 3A 2C 2C 38 4E 4E 38 2C 2C 3A 51 6A 7E
""")

TUBE_ANGLE = _hex_rows("""
05 06 07 08 09 0A 0B 0C 0D 0E 0F 00 01 02 03 04
04 04 08 08 08 08 0C 0C 0C 0C 00 00 00 00 04 04
04 08 04 08 08 0C 08 0C 0C 00 0C 00 00 04 00 04
06 07 09 08 07 09 0A 0C 0E 0F 01 00 0F 01 02 04
07 06 05 08 0B 0A 09 0C 0F 0E 0D 00 03 02 01 04
05 05 05 05 0B 0B 0B 0B 0B 00 00 00 00 00 00 05
04 08 0B 05 08 0C 0E 09 0C 00 03 0D 00 04 07 02
0D 0D 0D 0D 0D 0D 0D 00 03 03 03 03 03 03 03 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0C 0C 0C 0D 0E 0F 0F 00 01 01 02 03 04 04 04 00
0E 0D 0C 0D 0D 0D 01 0F 02 03 03 00 03 03 03 00
0B 09 07 05 03 01 0F 0D 0D 0F 01 03 05 07 09 0B
08 0B 0C 04 05 08 0B 0C 0D 0E 0F 01 02 03 04 05
0C 00 0C 00 0C 00 0C 00 04 00 04 00 04 00 04 00
0A 06 0C 08 0E 0A 00 0C 02 0E 04 00 06 02 08 04
0E 0C 0D 0E 00 02 02 00 0E 0E 00 02 03 04 02 00
""")

# 0xFF for open (planar) shapes, indexed by shape.
OPEN_FLAG = np.array([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF,
                      0xFF, 0xFF, 0xFF, 0x00, 0x00, 0xFF, 0x00, 0xFF], dtype=np.int32)

# Height of the 3-D eye per shape (y, as the rim points): pictures of the tube shrink its far end
# toward (0x80, this), so open shapes recede upward and the heart toward its tip.
CAMERA_Y = np.array([0x50, 0x50, 0x50, 0x68, 0x50, 0x50, 0x68, 0xB0,
                     0xA0, 0x50, 0x90, 0x80, 0x20, 0xB0, 0x60, 0xA0], dtype=np.int32)

# Level slot (0-based level mod 16) → shape index (the game's well-ID sequence).
SHAPE_OF_SLOT = np.array([0, 1, 2, 3, 4, 5, 6, 7, 13, 9, 8, 12, 14, 15, 10, 11], dtype=np.int32)

# Camera scale per shape; the zoom onto a new tube (gamestate 0x18) lasts 63 ticks for scales
# 0x18/0x1C and 64 for the others (game_rules_world.md §3.3).
SHAPE_SCALE = np.array([0x18, 0x1C, 0x18, 0x0F, 0x18, 0x18, 0x18, 0x18,
                        0x0A, 0x18, 0x10, 0x0F, 0x18, 0x0C, 0x14, 0x0A], dtype=np.int32)
ZOOM_IN_TICKS = np.where((SHAPE_SCALE == 0x18) | (SHAPE_SCALE == 0x1C), 63, 64).astype(np.int32)

