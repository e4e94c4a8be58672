"""Programs holding the simulator compile with the CPU options at the top level and still nest
inside other jitted programs (where XLA forbids per-program options)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax import sim
from tempest_jax.sim.compiling import CPU_OPTIONS, compiler_options, jit, program_size


def test_cpu_programs_get_the_cpu_options():
    assert jax.default_backend() == "cpu"
    assert compiler_options() == CPU_OPTIONS


def test_an_option_this_xla_does_not_know_is_left_out_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(CPU_OPTIONS, "xla_no_such_option_anywhere", True)
    options = compiler_options()
    assert "xla_no_such_option_anywhere" not in options
    assert options == {k: v for k, v in CPU_OPTIONS.items() if k != "xla_no_such_option_anywhere"}
    assert any("xla_no_such_option_anywhere" in r.getMessage() for r in caplog.records)


def test_a_program_runs_at_the_top_level_and_nested():
    @jit(static_argnums=(1,))
    def scaled(x, factor):
        return x * factor

    x = jnp.arange(4, dtype=jnp.int32)
    np.testing.assert_array_equal(scaled(x, 3), [0, 3, 6, 9])
    np.testing.assert_array_equal(jax.jit(lambda y: scaled(y, 2) + 1)(x), [1, 3, 5, 7])


def test_the_step_nests_in_a_scan():
    state, frame = sim.reset(jax.random.key(0), 2)
    actions = sim.expert_actions(frame)

    @jax.jit
    def two_steps(state, actions):
        def body(state, _):
            state, frame = sim.step(state, actions)
            return state, frame.level
        return jax.lax.scan(body, state, length=2)

    stepped, _ = two_steps(state, actions)
    direct, _ = sim.step(*sim.step(state, actions)[:1], actions)
    for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(a, b)


def test_program_size_counts_the_kernels_and_instructions_xla_made():
    x = np.arange(8, dtype=np.int32)
    fused = program_size(jax.jit(lambda x: (x + 1) * 2).lower(x).compile())
    assert fused["kernels"] == 1 and fused["instructions"] >= 3  # x, 1, 2, add, multiply
    # A reduction is a kernel of its own next to the elementwise output.
    both = program_size(jax.jit(lambda x: ((x + 1) * 2, jnp.sum(x * x))).lower(x).compile())
    assert both["kernels"] >= 2 and both["instructions"] > fused["instructions"]
