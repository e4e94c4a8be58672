"""Data-parallel learner over 4 (virtual CPU) devices equals the single-device learner.

Runs in a subprocess: the device count is fixed when JAX starts, and the main test process
must keep its single default device.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys, tempfile
    import jax, numpy as np
    from learner_testing import random_batch
    from tempest_jax.checkpoint import Checkpointer
    from tempest_jax.config import load_config
    from tempest_jax.actor import Inference
    from tempest_jax.learner import make_learner

    assert len(jax.devices()) == 4, jax.devices()
    cfg = load_config("smoke")
    single = make_learner(cfg, devices=jax.devices()[:1])
    multi = make_learner(cfg)
    assert multi.num_devices == 4
    batches = random_batch(np.random.default_rng(0), 16, 195, 44, leading=(3,))
    results = []
    for learner in (single, multi):
        state = learner.init(jax.random.key(0))
        state, metrics, priorities = learner.update_many(state, batches, bc_weight=0.5)
        obs = np.asarray(batches.obs[1, :7])  # 7 rows: not a multiple of 4, padded
        results.append(jax.device_get((state, metrics, priorities,
                                       Inference(learner, "float32").q_values(state.params, obs),
                                       Inference(learner, "float32").greedy_actions(
                                           state.params, obs))))
        if learner is multi:
            assert len(state.params["params"]["advantage"]["kernel"].sharding.device_set) == 4
            assert len(priorities.sharding.device_set) == 4
            with tempfile.TemporaryDirectory() as tmp:  # restores onto all 4 devices
                ckpt = Checkpointer(tmp)
                ckpt.save(3, learner, state, {}, cfg)
                ckpt.wait()
                restored = ckpt.restore(learner, cfg).train_state
                ckpt.close()
            assert len(restored.opt_state[1].mu["params"]["value"]["bias"].sharding
                       .device_set) == 4
            jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored),
                         jax.device_get(state))

    close = lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float64),
                                                    np.asarray(b, np.float64),
                                                    rtol=2e-5, atol=2e-6)
    jax.tree.map(close, results[0][:4], results[1][:4])
    np.testing.assert_array_equal(results[0][4], results[1][4])
    print("PARALLEL-OK")
""")


def test_multi_device_matches_single_device():
    tests_dir = Path(__file__).parent
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(tests_dir), str(tests_dir.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0 and "PARALLEL-OK" in done.stdout, done.stdout + done.stderr
