"""End to end over loopback: the training server with learning on, fed by 4 simulated clients.

Checks that the replay holds exactly the transitions built directly from the frames the clients
sent (and the actions they received), that the learner steps, and that the checkpoint written at
shutdown resumes the run.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from run_harness import TrainerThread

from tempest_jax import features as F
from tempest_jax import protocol as P
from tempest_jax.config import load_config
from tempest_jax.metrics import read_metrics
from tempest_jax.replay import Emission, NStepAccumulator, scaled_reward
from tempest_jax.rundir import RunDir
from tempest_jax.simclient import run_sim_clients
from tempest_jax.train import Trainer

CLIENTS = 4
TICKS = 500


def stored_transitions(buffer) -> list[tuple]:
    slots = np.flatnonzero(buffer.tree.leaves > 0)
    return sorted((buffer.obs[s].tobytes(), int(buffer.action[s]), float(buffer.ret[s]),
                   float(buffer.discount[s]), buffer.obs[buffer.next_slot[s]].tobytes())
                  for s in slots)


def expected_transitions(cfg, sent, received) -> list[tuple]:
    """The same frames pushed through a fresh accumulator, in each client's order."""
    acc = NStepAccumulator.from_config(cfg.replay, CLIENTS)
    emissions, obs_by_serial = [], {}
    streams = np.arange(CLIENTS)
    for wire, joint in zip(sent, received):
        batch = P.decode_wire(b"".join(wire))
        assert batch.valid.all()
        reward = scaled_reward(batch.obj_reward, batch.subj_reward, cfg.reward)
        done = batch.done != 0
        emissions.append(acc.push(streams, batch.state.astype(np.float16),
                                  np.where(done, 0, joint), reward, done,
                                  np.zeros(CLIENTS, bool),
                                  F.action_applied(batch.gamestate, batch.game_mode,
                                                   batch.state)))
    emissions.append(acc.truncate(streams))  # the clients disconnect at the end
    e = Emission.concatenate(emissions)
    for i, row in enumerate(e.obs):
        obs_by_serial[e.first_serial + i] = row.tobytes()
    return sorted((obs_by_serial[s], int(a), float(r), float(d), obs_by_serial[n])
                  for s, n, a, r, d in zip(e.start, e.next, e.action, e.ret, e.discount))


@pytest.mark.timeout(900)
def test_server_training_with_sim_clients_then_resume(tmp_path):
    cfg = load_config("smoke", [
        "env.source=mame", "server.port=0", "server.max_clients=8", f"run.dir={tmp_path}",
        "run.name=e2e", "replay.min_size=64", "replay.capacity=50000", "run.log_interval_s=0.5",
        "schedule.expert_start=0.0", "schedule.expert_end=0.0", "run.total_frames=0"])
    run_dir = RunDir.create(cfg)
    trainer = Trainer(cfg, run_dir, install_signal_handlers=False)
    with TrainerThread(trainer) as run:
        address = run.wait_for_server()
        # The server's actions draw from the run's key stream, never from the parameters'
        # initialisation key (the root key's first split).
        init_key = jax.random.split(jax.random.key(cfg.learner.seed))[1]
        assert not np.array_equal(np.asarray(trainer.source.policy._state.rng),
                                  jax.random.bits(init_key, (4,), np.uint32))
        # Replies never wait for a compile (the server compiled inference before serving);
        # the timeout only guards against a hang.
        played = run_sim_clients(address, CLIENTS, ticks=TICKS, record=True,
                                 reply_timeout=600)
        assert played.frames == CLIENTS * TICKS
        run.wait_until(lambda: trainer.updates > 0, "the learner's first step")
        # Wait until every client's disconnect has been flushed into replay.
        run.wait_until(lambda: trainer.server.stats.clients_connected == 0,
                       "the clients' disconnects")
        assert run.stop() == 0

    assert trainer.server.stats.frames == CLIENTS * TICKS
    assert sum(trainer.server.stats.drops.values()) == 0
    assert stored_transitions(trainer.replay.buffer) == expected_transitions(
        cfg, played.sent, played.received)

    records = read_metrics(run_dir.metrics_file)
    assert records and records[-1]["final"] and records[-1]["frames"] == CLIENTS * TICKS
    # Lockstep clients keep at most one frame each waiting; all were answered at the end.
    assert records[-1]["queued_frames"] == 0 and records[-1]["write_queue"] == 0
    assert all(0 <= r["queued_frames_peak"] <= CLIENTS for r in records)

    saved_step = trainer.saver.checkpointer.latest_step()
    assert saved_step == trainer.updates
    resumed = Trainer(cfg, RunDir.open(run_dir.path), resume=True,
                      install_signal_handlers=False)
    assert resumed.updates == trainer.updates and resumed.frames == trainer.frames
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)),
                        resumed.learning.state.params, trainer.learning.state.params)
    assert all(jax.tree.leaves(same))
    resumed.saver.checkpointer.close()


def test_replay_sink_stores_every_few_batches_and_reports_what_waits():
    """The sink stores its emissions every INSERT_EVERY_BATCHES pushes, at a disconnect and at
    close, in order and whole; queue_depths gives the batches formed and not yet stored, now
    and at most since the previous reading."""
    from tempest_jax.bench.protocol_bench import random_wire_frames
    from tempest_jax.metrics import EpisodeStats
    from tempest_jax.policy import PolicyOutput
    from tempest_jax.replay import ReplaySink
    from tempest_jax.replay.writer import INSERT_EVERY_BATCHES

    class RecordingReplay:
        def __init__(self):
            self.accumulator = NStepAccumulator(4)
            self.inserts: list[Emission] = []

        def add(self, emission):
            self.inserts.append(emission)

        def stored_up_to(self) -> int:
            """The serial after the last stored observation; inserts must be consecutive."""
            Emission.concatenate(self.inserts)
            return self.inserts[-1].next_serial

    batch = P.decode_valid_payloads(b"".join(
        P.FrameSplitter().feed(random_wire_frames(2, seed=5))))
    ids = np.array([0, 1])
    output = PolicyOutput(joint=np.zeros(2, np.int64), is_expert=np.zeros(2, bool))
    replay = RecordingReplay()
    sink = ReplaySink(replay, load_config("smoke").reward, EpisodeStats(4), lambda: 0)
    for pushed in range(1, INSERT_EVERY_BATCHES):
        sink.push(ids, batch, output)
        assert sink.queue_depths() == (pushed, pushed)
    assert replay.inserts == []
    sink.push(ids, batch, output)
    assert len(replay.inserts) == 1 and replay.stored_up_to() == replay.accumulator.next_serial
    assert sink.queue_depths() == (0, INSERT_EVERY_BATCHES)
    assert sink.queue_depths() == (0, 0), "each reading starts a new peak window"

    sink.push(ids, batch, output)
    sink.disconnect(0)
    assert len(replay.inserts) == 2 and sink.queue_depths() == (0, 2)
    sink.push(ids, batch, output)
    sink.close()
    assert len(replay.inserts) == 3 and replay.stored_up_to() == replay.accumulator.next_serial
