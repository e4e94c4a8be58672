"""Videos of recorded games: one image per game tick, drawn by `render` and encoded by ffmpeg.

The file's extension picks the format: `.mp4` (H.264) or `.gif`. Encoding goes through
imageio-ffmpeg, the imageio project's package that ships an ffmpeg binary, frame by frame, so a
long game never sits in memory as pictures. A GIF keeps the renderer's colours exactly (they
are levels of ffmpeg's 3-3-2 GIF palette); every tick is its own GIF image.

Games recorded side by side (`both`: the network and the expert on the same seed) share each
image; the shorter game holds its last picture until the longer one ends.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tempest_jax.render import Renderer
from tempest_jax.sim.play import GameRecording

FORMATS = (".mp4", ".gif")
# --video-policy of `eval`: the policies recorded, left to right.
POLICY_CHOICES = {"network": ("network",), "expert": ("expert",), "both": ("network", "expert")}
VIDEO_FPS = 20  # about the arcade's rate of game ticks per second
MP4_QUALITY = 8  # imageio-ffmpeg's 0..10 scale; 8 is H.264 CRF 10, crisp for thin lines


@dataclass(frozen=True)
class VideoRequest:
    """What `--video` asked for: the file, the policies shown side by side, how many games,
    their speed and picture size, and whether network pictures show the top actions'
    Q-values."""

    path: Path
    policies: tuple[str, ...] = ("network",)
    games: int = 1
    fps: int = VIDEO_FPS
    size: int = 256
    q_overlay: bool = True

    def __post_init__(self):
        check_path(self.path)
        if self.games < 1 or self.fps < 1:
            raise ValueError("a video needs at least one game and one image per second")
        Renderer(self.size)  # rejects a size it cannot draw


def check_path(path: Path) -> None:
    if Path(path).suffix.lower() not in FORMATS:
        raise ValueError(f"video file {path}: the name must end in {' or '.join(FORMATS)}")
    if not Path(path).parent.is_dir():
        raise ValueError(f"video file {path}: directory {Path(path).parent} does not exist")


class VideoWriter:
    """RGB images (height, width, 3) uint8 into an .mp4 or .gif file, as they come."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int = VIDEO_FPS):
        import imageio_ffmpeg

        check_path(Path(path))
        self.path = Path(path)
        self.size = (width, height)
        self.images = 0
        if self.path.suffix.lower() == ".gif":
            options = {"codec": "gif", "pix_fmt_out": "rgb8", "quality": None,
                       "macro_block_size": 1}
        else:
            options = {"codec": "libx264", "pix_fmt_out": "yuv420p", "quality": MP4_QUALITY,
                       "macro_block_size": 2}
        self._encoder = imageio_ffmpeg.write_frames(str(self.path), self.size, fps=fps,
                                                    ffmpeg_log_level="error", **options)
        with warnings.catch_warnings():
            # JAX warns at every fork; subprocess's child execs ffmpeg at once and runs no
            # Python, so nothing can deadlock.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                    category=RuntimeWarning)
            self._encoder.send(None)  # starts ffmpeg

    def write(self, image: np.ndarray) -> None:
        if image.shape != (self.size[1], self.size[0], 3) or image.dtype != np.uint8:
            raise ValueError(f"image {image.shape} {image.dtype} does not fit the video's "
                             f"{self.size[0]}x{self.size[1]} RGB uint8")
        self._encoder.send(np.ascontiguousarray(image))
        self.images += 1

    def close(self) -> None:
        self._encoder.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(request: VideoRequest, columns: dict[str, list[GameRecording]]) -> dict:
    """Encode recorded games: `columns` maps a label (the policy's name) to its games; the
    columns stand side by side and the games follow one another. Returns what was written:
    path, images, size, fps, each column's ticks per game and the rendering rate."""
    labels = list(columns)
    games = min(len(columns[label]) for label in labels)
    renderer = Renderer(request.size)
    drawing_s = 0.0
    with VideoWriter(request.path, request.size * len(labels), request.size,
                     request.fps) as writer:
        for game in range(games):
            recordings = [columns[label][game] for label in labels]
            for tick in range(max(len(r) for r in recordings)):
                start = time.perf_counter()
                image = np.concatenate([
                    _picture(renderer, r, min(tick, len(r) - 1), label.upper(),
                             request.q_overlay)
                    for label, r in zip(labels, recordings)], axis=1)
                drawing_s += time.perf_counter() - start
                writer.write(image)
    pictures = writer.images * len(labels)
    return {"path": str(request.path), "images": writer.images, "games": games,
            "width": request.size * len(labels), "height": request.size, "fps": request.fps,
            "ticks": {label: [len(r) for r in columns[label][:games]] for label in labels},
            "pictures_per_s": pictures / drawing_s if drawing_s > 0 else 0.0}


def _picture(renderer: Renderer, recording: GameRecording, tick: int, label: str,
             q_overlay: bool) -> np.ndarray:
    q = recording.q_values[tick] if q_overlay and recording.q_values is not None else None
    return renderer.rgb(recording.state[tick], recording.header_at(tick),
                        action=int(recording.action[tick]), q_values=q, label=label)


def describe(video: dict) -> str:
    """One line for the terminal about a written video."""
    ticks = ", ".join(f"{label} {'+'.join(map(str, t))}" for label, t in video["ticks"].items())
    return (f"video {video['path']}: {video['images']:,} images "
            f"({video['width']}x{video['height']}, {video['fps']} per second; ticks: {ticks}), "
            f"drawn at {video['pictures_per_s']:,.0f} pictures/s")
