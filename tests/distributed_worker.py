"""One process of the multi-process learner tests (tests/test_distributed.py).

    python distributed_worker.py MODE PORT NUM_PROCESSES PROCESS_ID OUT_DIR

MODE `update`: a learner (the tabular test network: it compiles quickly) runs DISPATCHES
dispatches on fixed global batches (this process feeds its own rows), writes its parameters
after every dispatch and its rows' priorities to OUT_DIR/update-pID-ofN.npz, then saves a
checkpoint in OUT_DIR/ckpt.
MODE `restore`: restores that checkpoint onto this job's mesh and writes the parameters.
MODE `endless`: updates and checkpoints (every dispatch, waiting for each) until killed, printing
SAVED STEP after each checkpoint is on disk.
With NUM_PROCESSES 1 it runs alone on every local device (the reference).
"""

import sys
from pathlib import Path

import numpy as np

DISPATCHES, K, GLOBAL_BATCH = 3, 2, 16
OBS, ACTIONS = 8, 4


def flat_params(state) -> dict[str, np.ndarray]:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main() -> None:
    mode, port, num_processes, process_id, out = sys.argv[1:6]
    num_processes, process_id, out = int(num_processes), int(process_id), Path(out)
    from tempest_jax import distributed
    from tempest_jax.config import load_config

    cfg = load_config("smoke", [f"learner.batch_size={GLOBAL_BATCH}"] + (
        ["distributed.enabled=true", f"distributed.coordinator_address=127.0.0.1:{port}",
         f"distributed.num_processes={num_processes}", f"distributed.process_id={process_id}",
         "distributed.initialization_timeout_s=60", "distributed.heartbeat_timeout_s=5",
         "distributed.shutdown_timeout_s=60"] if num_processes > 1 else []))
    distributed.initialize(cfg.distributed)
    import jax
    from learner_testing import TableNetwork, random_batch

    from tempest_jax.checkpoint import Checkpointer
    from tempest_jax.learner import make_learner

    learner = make_learner(cfg, TableNetwork(ACTIONS, cfg.network.num_atoms), obs_size=OBS,
                           num_actions=ACTIONS)
    assert learner.num_devices == 4 and jax.process_count() == num_processes
    share = learner.local_batch_rows
    mine = slice(process_id * share, (process_id + 1) * share)
    checkpointer = Checkpointer(out / "ckpt")
    if mode == "update":
        state = learner.init(jax.random.key(0))
        rng = np.random.default_rng(0)
        record = {}
        for step in range(DISPATCHES):
            batches = random_batch(rng, GLOBAL_BATCH, OBS, ACTIONS, leading=(K,))
            local = jax.tree.map(lambda x: x[:, mine], batches)
            state, metrics, priorities = learner.update_many(state, local, bc_weight=0.5)
            record.update({f"{step}/{name}": value
                           for name, value in flat_params(state).items()})
            record[f"{step}/priorities"] = distributed.local_rows(priorities, axis=1)
            record[f"{step}/loss"] = np.asarray(metrics["loss"])
        checkpointer.save(int(state.step), learner, state, {"frames": 123}, cfg,
                          rng=jax.random.key(7))
    elif mode == "endless":
        state = learner.init(jax.random.key(0))
        rng = np.random.default_rng(process_id)
        while True:
            batches = random_batch(rng, share, OBS, ACTIONS, leading=(K,))
            state, _, priorities = learner.update_many(state, batches, bc_weight=0.5)
            distributed.local_rows(priorities, axis=1)
            checkpointer.save(int(state.step), learner, state, {"frames": 123}, cfg)
            checkpointer.wait()
            print(f"SAVED {int(state.step)}", flush=True)
    else:
        restored = checkpointer.restore(learner, cfg)
        assert restored.counters == {"frames": 123}, restored.counters
        record = flat_params(restored.train_state)
        # The restored state trains on: one more dispatch runs on this job's mesh.
        batches = random_batch(np.random.default_rng(1), GLOBAL_BATCH, OBS, ACTIONS, leading=(K,))
        # Waited for: a process must not tear down while its collectives are in flight.
        jax.block_until_ready(learner.update_many(
            restored.train_state, jax.tree.map(lambda x: x[:, mine], batches), bc_weight=0.5))
        if restored.rng is not None:
            record["rng"] = np.asarray(jax.random.key_data(restored.rng))
    checkpointer.wait()
    checkpointer.close()
    np.savez(out / f"{mode}-p{process_id}-of{num_processes}.npz", **record)
    distributed.shutdown()
    print("WORKER-OK", flush=True)


if __name__ == "__main__":
    main()
