"""Videos: one picture per game tick, from `sim play --video` and `eval --video`.

The compiled rollouts are the slow part (tens of seconds each): the tests share them. Four
games with the first one recorded, as the expert game below plays, is the same rollout as
`sim play --policy expert --games 4 --video-games 1` and as the expert's in `eval --episodes 4
--video-policy both`, so it compiles once; the random policy's rollout in that evaluation is
the one tests/test_train_sim_eval.py's evaluation compiled (four games, nothing recorded).
"""

from __future__ import annotations

import json

import imageio_ffmpeg
import jax
import numpy as np
import pytest
from PIL import Image

from tempest_jax.checkpoint import Checkpointer
from tempest_jax.cli import main
from tempest_jax.config import load_config
from tempest_jax.learner import make_learner
from tempest_jax.render import Renderer
from tempest_jax.sim import play
from tempest_jax.video import VideoRequest, VideoWriter, write_video

pytestmark = [pytest.mark.timeout(600),
              # imageio-ffmpeg starts ffmpeg with subprocess (fork + exec): harmless here.
              pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")]


GAMES = 4


@pytest.fixture(scope="module")
def expert_game():
    """The first of four expert games (seed 0), a whole game recorded tick by tick, and the
    four games' statistics."""
    recorder = play.FrameRecorder(1)
    stats = play.play("expert", GAMES, max_ticks=20_000, recorder=recorder)
    return recorder.recordings()[0], stats


def first_ticks(recording: play.GameRecording, n: int) -> play.GameRecording:
    return play.GameRecording(
        state=recording.state[:n], header={k: v[:n] for k, v in recording.header.items()},
        action=recording.action[:n],
        q_values=None if recording.q_values is None else recording.q_values[:n])


def gif_images(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        images = []
        for index in range(gif.n_frames):
            gif.seek(index)
            images.append(np.asarray(gif.convert("RGB")))
        return images


def test_recorder_keeps_every_tick_of_the_game(expert_game):
    recording, stats = expert_game
    assert stats["finished"][0], "the expert's game ends within the limit"
    assert len(recording) == stats["ticks"][0] > 1000
    assert recording.state.shape == (len(recording), 195)
    assert recording.q_values is None
    # The first picture is the new game's frame, then one frame per tick, in order.
    np.testing.assert_array_equal(recording.header["frame"], np.arange(1, len(recording) + 1))
    assert recording.header["level"].max() + 1 == stats["level"][0]
    assert recording.header["score"][-1] <= stats["score"][0]


def test_gif_has_one_exact_picture_per_tick(expert_game, tmp_path):
    recording = first_ticks(expert_game[0], 40)
    path = tmp_path / "expert.gif"
    info = write_video(VideoRequest(path, policies=("expert",)), {"expert": [recording]})
    assert info["images"] == 40 and info["ticks"] == {"expert": [40]}
    images = gif_images(path)
    assert len(images) == 40
    renderer = Renderer(256)
    for tick in (0, 17, 39):
        expected = renderer.rgb(recording.state[tick], recording.header_at(tick),
                                action=int(recording.action[tick]), label="EXPERT")
        np.testing.assert_array_equal(images[tick], expected)


def test_side_by_side_holds_the_shorter_games_last_picture(expert_game, tmp_path):
    recording = expert_game[0]
    short, long = first_ticks(recording, 30), first_ticks(recording, 45)
    path = tmp_path / "both.gif"
    info = write_video(VideoRequest(path, policies=("network", "expert")),
                       {"network": [short], "expert": [long]})
    assert (info["images"], info["width"], info["height"]) == (45, 512, 256)
    images = gif_images(path)
    assert len(images) == 45 and images[0].shape == (256, 512, 3)
    np.testing.assert_array_equal(images[44][:, :256], images[29][:, :256])
    assert not np.array_equal(images[44][:, 256:], images[29][:, 256:])


def test_writer_rejects_wrong_images_and_names(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        VideoWriter(tmp_path / "x.avi", 256, 256)
    with VideoWriter(tmp_path / "x.mp4", 256, 256) as writer, \
            pytest.raises(ValueError, match="does not fit"):
        writer.write(np.zeros((256, 128, 3), np.uint8))


def test_sim_play_writes_a_gif_with_one_image_per_tick(expert_game, tmp_path, capsys):
    path = tmp_path / "expert.gif"
    assert main(["sim", "play", "--policy", "expert", "--games", str(GAMES), "--max-ticks",
                 "500", "--video", str(path), "--json"]) == 0
    video = json.loads(capsys.readouterr().out)["video"]
    assert video["ticks"] == {"expert": [500]} and video["images"] == 500
    assert video["pictures_per_s"] > 0
    with Image.open(path) as gif:
        assert gif.n_frames == 500 and gif.info["duration"] == 50  # 20 per second
    # The same seed and policy: the video's game is the recorded expert game.
    recording = expert_game[0]
    images = gif_images(path)
    np.testing.assert_array_equal(images[123], Renderer(256).rgb(
        recording.state[123], recording.header_at(123), action=int(recording.action[123]),
        label="EXPERT"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory with one checkpoint of an untrained smoke-sized network."""
    run = tmp_path_factory.mktemp("run")
    cfg = load_config("smoke", [f"run.dir={run}"])
    learner = make_learner(cfg)
    checkpointer = Checkpointer(run / "checkpoints", async_save=False)
    try:
        checkpointer.save(1, learner, learner.init(jax.random.key(0)), {"frames": 0}, cfg)
        checkpointer.wait()
    finally:
        checkpointer.close()
    return run


def test_eval_writes_an_mp4_of_network_and_expert(tiny_run, tmp_path, capsys):
    path = tmp_path / "eval.mp4"
    assert main(["eval", str(tiny_run), "--episodes", str(GAMES), "--max-ticks", "500",
                 "--video", str(path), "--video-policy", "both", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    video = results["video"]
    ticks = video["ticks"]
    assert set(ticks) == {"network", "expert"} and video["width"] == 512
    assert video["images"] == max(ticks["network"][0], ticks["expert"][0]) == 500
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == video["images"] and seconds == pytest.approx(500 / 20, abs=0.1)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (512, 256)
    first = np.frombuffer(next(reader), np.uint8).reshape(256, 512, 3)
    reader.close()
    assert first.mean() > 1, "the pictures are drawn"


def test_video_options_are_checked(tiny_run, tmp_path):
    with pytest.raises(SystemExit, match=r"\.mp4 or \.gif"):
        main(["eval", str(tiny_run), "--episodes", "1", "--video", str(tmp_path / "a.avi")])
    with pytest.raises(SystemExit, match="more than the 1 games played"):
        main(["eval", str(tiny_run), "--episodes", "1", "--video", str(tmp_path / "a.mp4"),
              "--video-games", "2"])
    with pytest.raises(SystemExit, match="--env sim only"):
        main(["eval", str(tiny_run), "--env", "mame", "--video", str(tmp_path / "a.mp4")])
    with pytest.raises(SystemExit, match="even and at least"):
        main(["sim", "play", "--video", str(tmp_path / "a.gif"), "--video-size", "101"])


def test_render_bench_reports_its_figures(expert_game, capsys, monkeypatch):
    """The bench's measurements, on the recorded game's frames (recording them is the
    simulator's part, compiled and tested above)."""
    from tempest_jax.bench import render_bench

    recording = expert_game[0]
    frames = [(recording.state[t], recording.header_at(t), int(recording.action[t]))
              for t in range(0, len(recording), 10)]
    monkeypatch.setattr(render_bench, "recorded_frames", lambda levels, ticks: frames)
    assert main(["bench", "render", "--json", "--seconds", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bench"] == "render" and report["settings"]["frames"] == len(frames)
    assert set(report["figures"]) == {"frames_per_s", "frames_per_s_overlay",
                                      "frames_per_s_mp4", "frames_per_s_gif"}
    assert all(rate > 0 for rate in report["figures"].values())
