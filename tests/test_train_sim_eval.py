"""A short in-process simulator run, then `eval` of its checkpoint and the CLI table."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from run_harness import TrainerThread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.bench.protocol_bench import random_wire_frames
from tempest_jax.cli import main
from tempest_jax.clients import ClientPool
from tempest_jax.config import ServerConfig, load_config
from tempest_jax.evaluate import GameRecorder, ProgressLine, evaluate, evaluate_served
from tempest_jax.metrics import read_metrics
from tempest_jax.rundir import RunDir
from tempest_jax.trackers import scalars
from tempest_jax.train import Trainer


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config("smoke", [f"run.dir={tmp}", "run.name=sim", "env.num_games=8",
                                "env.rollout_steps=8", "run.log_interval_s=0.2",
                                "run.tensorboard=true", "env.start_level_span=3"])
    run_dir = RunDir.create(cfg)
    trainer = Trainer(cfg, run_dir, install_signal_handlers=False)
    assert trainer.run(frames=4_000) == 0
    return trainer, run_dir


def test_sim_training_fills_replay_learns_and_checkpoints(sim_run):
    trainer, run_dir = sim_run
    assert trainer.frames >= 4_000
    assert len(trainer.replay.buffer) > 0 and trainer.updates > 0
    # Every rollout reuses the first compilation: the games' layout never changes between calls.
    assert trainer.source._rollout._cache_size() == 1
    assert trainer.saver.checkpointer.latest_step() == trainer.updates
    records = read_metrics(run_dir.metrics_file)
    assert records[-1]["final"] and records[-1]["frames"] == trainer.frames
    assert all(k in records[-1] for k in ("loss", "epsilon", "expert_ratio", "replay_size"))
    # The updates counted are the applied ones, as the train state counts them.
    assert trainer.updates == int(trainer.learning.state.step)


def test_games_start_on_the_levels_of_their_span(sim_run):
    """env.start_level_span = 3: the 8 games start on levels 1, 2, 3, 1, 2, 3, 1, 2 (0-based in
    the state), keep them for every new game, and an operator's new start level moves the
    whole span."""
    trainer, _ = sim_run
    source = trainer.source
    game = source.state.game
    np.testing.assert_array_equal(np.asarray(game.start_level), [0, 1, 2, 0, 1, 2, 0, 1])
    assert (np.asarray(game.level) >= np.asarray(game.start_level)).all()
    before = source.start_level
    try:
        source.apply(dataclasses.replace(trainer.controls.settings, start_level=5))
        np.testing.assert_array_equal(np.asarray(source.state.game.start_level),
                                      [4, 5, 6, 4, 5, 6, 4, 5])
    finally:
        source.apply(dataclasses.replace(trainer.controls.settings, start_level=before))


def test_no_transition_starts_on_a_frame_the_player_is_dead_in(sim_run):
    """The game state stays "playing" through the death explosion; those frames' actions do
    nothing, so no stored transition may start on one. Each death is one terminal transition."""
    trainer, _ = sim_run
    buffer = trainer.replay.buffer
    stored = np.flatnonzero(buffer.tree.leaves > 0)
    alive = buffer.obs[stored, F.LAYOUT["alive"].start].astype(np.float32)
    assert stored.size > 0 and np.all(alive == 1.0)
    terminal = stored[buffer.discount[stored] == 0]
    assert terminal.size > 0, "some game died within the run"
    # A terminal transition's successor is the death frame itself: the player is dead there.
    assert np.all(buffer.obs[buffer.next_slot[terminal], F.LAYOUT["alive"].start] == 0.0)


def test_tensorboard_events_equal_the_metrics_file(sim_run):
    """Every number of every metrics record, read back by TensorBoard's own event reader, at
    step = the run's frames (values as TensorBoard stores them: float32)."""
    _, run_dir = sim_run
    records = read_metrics(run_dir.metrics_file)
    expected = {}
    for record in records:
        for tag, value in scalars(record).items():
            expected.setdefault(tag, []).append((record["frames"], np.float32(value)))
    events = EventAccumulator(str(run_dir.path), size_guidance={"scalars": 0})
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    assert {"frames", "fps", "loss", "epsilon", "replay_size", "reward_100k"} <= set(expected)
    for tag, values in expected.items():
        got = [(e.step, np.float32(e.value)) for e in events.Scalars(tag)]
        np.testing.assert_array_equal(np.asarray(got), np.asarray(values), err_msg=tag)
    assert events.Scalars("frames")[-1].wall_time == records[-1]["time"]


def test_eval_plays_network_expert_and_random_on_the_same_games(sim_run, capsys):
    _, run_dir = sim_run
    results = evaluate(run_dir.path, games=4, max_ticks=500, show_progress=False)
    for policy in ("network", "expert", "random"):
        assert results[policy]["games"] == 4
        assert results[policy]["mean_score"] >= 0
    assert main(["eval", str(run_dir.path), "--episodes", "4", "--max-ticks", "500",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["expert"] == results["expert"] and printed["network"] == results["network"]


def scripted_games(games: int, seed: int) -> list[bytes]:
    """Wire frames of back-to-back scripted games: two attract-mode frames, six real-game
    frames at level index 4 with one death, score 1234 at game over."""
    real = ([False, False] + [True] * 6) * games
    batch = P.decode_wire(random_wire_frames(len(real), seed))
    header = dict(batch.header)
    header["game_mode"] = np.where(real, 0x80, 0)
    header["done"] = np.tile([0, 0, 0, 0, 1, 0, 0, 0], games)
    header["score"] = np.full(len(real), 1234)
    header["level"] = np.full(len(real), 4)
    wire = P.encode_frames(header, batch.state)
    return [wire[i: i + P.FRAME_WIRE_SIZE] for i in range(0, len(wire), P.FRAME_WIRE_SIZE)]


def test_served_eval_counts_whole_games_of_each_policy(sim_run):
    _, run_dir = sim_run
    streams = [scripted_games(40, seed) for seed in range(2)]

    def play_against(address):
        def play():
            pool = ClientPool(address, len(streams))
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                for tick in range(len(streams[0])):
                    pool.exchange([stream[tick] for stream in streams])
            pool.close()
        threading.Thread(target=play, daemon=True).start()

    results = evaluate_served(run_dir.path, games=3, server_cfg=ServerConfig(port=0),
                              timeout_s=60, show_progress=False, on_listening=play_against)
    assert results["env"] == "mame"
    for policy in ("network", "expert", "random"):
        summary = results[policy]
        assert summary["games"] == 3 and summary["finished"] == 3
        assert summary["mean_score"] == 1234 and summary["max_level"] == 5
        assert summary["frames_per_life"] == 6 and summary["mean_death_level"] == 5


def test_game_recorder_counts_only_games_started_under_the_current_policy():
    recorder = GameRecorder()

    def frames(ids, real, done=0, score=100, level=0):
        n = len(ids)
        header = {"game_mode": np.where(np.asarray(real), 0x80, 0).astype(np.uint8),
                  "done": np.full(n, done, np.uint8), "score": np.full(n, score, np.uint32),
                  "level": np.full(n, level, np.uint8)}
        recorder.push(np.asarray(ids), SimpleNamespace(**header), None)

    frames([0, 1], [True, False])      # client 0 joined mid-game: not counted
    frames([0, 1], [True, True])       # client 1 starts a game
    frames([0, 1], [True, True], done=1, level=2)
    frames([0, 1], [False, False], score=700)
    assert recorder.games == [{"score": 100, "level": 3, "deaths": 1, "death_level_sum": 3,
                               "ticks": 2}]
    frames([0, 1], [True, True])       # both start games ...
    recorder.restart()                 # ... under the old policy: not counted
    frames([0], [False])
    recorder.disconnect(1)
    assert recorder.games == []


def test_plot_draws_the_runs_curves(sim_run, tmp_path):
    import matplotlib.image

    _, run_dir = sim_run
    out = tmp_path / "curves.png"
    assert main(["plot", str(run_dir.path), str(run_dir.path), "--out", str(out)]) == 0
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (800, 1200)
    # Something was drawn: far from a blank canvas, with coloured (non-grey) curve pixels.
    rgb = pixels[..., :3]
    assert (rgb < 0.9).mean() > 0.02
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).sum() > 200


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


PROGRESS_UPDATES = [(0, "0 clients"), (0, "1 clients"), (0, "1 clients"), (1, "1 clients"),
                    (1, "1 clients"), (2, "0 clients")]


def _progress_written(name: str, tty: bool) -> str:
    """What a `ProgressLine` of 2 games writes for PROGRESS_UPDATES, then its close."""
    stream = _Stream(tty)
    line = ProgressLine(name, 2, stream=stream)
    for finished, detail in PROGRESS_UPDATES:
        line.update(finished, detail)
    line.close()
    return stream.getvalue()


def test_eval_progress_goes_to_a_log_as_a_line_per_step_of_the_bar():
    assert _progress_written("network", tty=False).splitlines() == [
        " network [                              ] 0/2 games over, 0 clients",
        " network [###############               ] 1/2 games over, 1 clients",
        " network [##############################] 2/2 games over, 0 clients"]


def test_eval_progress_on_a_terminal_is_rewritten_only_when_it_changes():
    assert _progress_written("expert", tty=True) == (
        "\r  expert [                              ] 0/2 games over, 0 clients"
        "\r  expert [                              ] 0/2 games over, 1 clients"
        "\r  expert [###############               ] 1/2 games over, 1 clients"
        "\r  expert [##############################] 2/2 games over, 0 clients\n")


def test_plot_rejects_a_directory_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="not a run directory"):
        main(["plot", str(tmp_path)])


def test_eval_and_resume_of_a_missing_run_say_so_in_one_line(tmp_path):
    missing = str(tmp_path / "no-such-run")
    with pytest.raises(SystemExit, match=f"^tempest-jax eval: {re.escape(missing)}: no such "
                                         "run or checkpoint directory$"):
        main(["eval", missing])
    with pytest.raises(SystemExit, match=f"^tempest-jax train: --resume: {re.escape(missing)} "
                                         r"is not a run directory \(no config.toml\)$"):
        main(["train", "--resume", missing])


def test_a_stop_with_frames_but_no_update_since_the_last_checkpoint_says_so(tmp_path, caplog):
    cfg = load_config("smoke", [f"run.dir={tmp_path}", "run.name=paused", "env.num_games=8",
                                "env.rollout_steps=8", "run.log_interval_s=3600"])
    trainer = Trainer(cfg, RunDir.create(cfg), install_signal_handlers=False)
    assert trainer.save() == 0
    trainer.controls.set_training(False)  # frames, no updates: checkpoint 0 stays the only step
    with caplog.at_level("INFO", logger="tempest_jax.train"):
        assert trainer.run(frames=2_000) == 0
    checkpointer = trainer.saver.checkpointer
    assert trainer.updates == 0 and checkpointer.all_steps() == [0]
    saved = checkpointer.restore(trainer.learner, cfg).counters["frames"]
    assert saved == 0 < trainer.frames
    warnings = [r.getMessage() for r in caplog.records if "no checkpoint at the stop" in
                r.getMessage()]
    assert warnings == [f"no checkpoint at the stop: checkpoint 0 already holds update 0, so "
                        f"the {trainer.frames - saved:,} frames collected since (without an "
                        f"update) are in none; a resume continues from its {saved:,} frames"]
    # The run's last line says where it stopped and what resumes it.
    assert caplog.records[-1].getMessage() == (
        f"run stopped at {trainer.frames:,} frames and 0 updates; the newest checkpoint is 0 in "
        f"{trainer.saver.run_dir.path} (train --resume)")


def test_periodic_evaluation_keeps_the_best_checkpoint_and_eval_can_take_it(tmp_path, capsys):
    """Every run.eval_interval updates the greedy network plays the same seeded games in the
    background; the figures go to the metrics, the best-scoring state to checkpoints/best/,
    which the run's own pruning (keep_checkpoints = 1) never touches; `eval --checkpoint best`
    and `--checkpoint STEP` restore what they name."""
    cfg = load_config("smoke", [f"run.dir={tmp_path}", "run.name=evals", "env.num_games=8",
                                "env.rollout_steps=8", "run.log_interval_s=0.2",
                                "run.eval_interval=20", "run.eval_games=2",
                                "run.eval_max_ticks=300", "run.keep_checkpoints=1",
                                "run.checkpoint_interval_s=1", "run.tensorboard=true"])
    run_dir = RunDir.create(cfg)
    trainer = Trainer(cfg, run_dir, install_signal_handlers=False)
    with TrainerThread(trainer, frames=100_000) as run:
        run.wait_until(lambda: trainer.evaluator.latest.get("evaluations", 0) >= 2,
                       "two periodic evaluations")
        assert run.stop() == 0
    records = [r for r in read_metrics(run_dir.metrics_file) if "eval_score" in r]
    assert records and all(r["eval_best_score"] >= r["eval_score"] for r in records)
    best_dir = run_dir.path / "checkpoints" / "best"
    best_steps = [int(p.name) for p in best_dir.iterdir() if p.name.isdigit()]
    assert records[-1]["eval_best_score"] == max(r["eval_score"] for r in records)
    assert len(best_steps) == 1 and best_steps[0] == max(
        records, key=lambda r: (r["eval_score"], -r["eval_updates"]))["eval_updates"]
    kept = sorted(int(p.name) for p in (run_dir.path / "checkpoints").iterdir()
                  if p.name.isdigit())
    assert kept == [trainer.updates]  # pruned to one; the best one lives apart
    # Each evaluation's first game, filmed for TensorBoard (one picture per tick it played).
    events = EventAccumulator(str(run_dir.path), size_guidance={"images": 0})
    events.Reload()
    clips = events.Images("eval/game")
    assert len(clips) >= 2 and clips[0].width == clips[0].height == 128
    assert clips[0].encoded_image_string[:6] == b"GIF89a"

    capsys.readouterr()  # the run's terminal rows
    assert main(["eval", str(run_dir.path), "--checkpoint", "best", "--episodes", "2",
                 "--max-ticks", "300", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["which"] == "best" and printed["step"] == best_steps[0]
    assert main(["eval", str(run_dir.path), "--checkpoint", str(kept[0]), "--episodes", "2",
                 "--max-ticks", "300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == kept[0]
    with pytest.raises(SystemExit, match="^tempest-jax eval: no checkpoint 7 in .* \\(its "
                                         "checkpoints: "):
        main(["eval", str(run_dir.path), "--checkpoint", "7", "--episodes", "1"])
