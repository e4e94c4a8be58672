"""How the programs that hold the simulator are compiled.

A simulator step is a large program of many small integer kernels. On CPU, XLA's default LLVM
optimisation level (2) spends most of the compile time optimising those kernels for little gain:
level 1 compiles the step at 4,096 games in about 60% of the time at the same steps/s, and the
training rollout (simulator + network) in about 80% (`tempest-jax bench sim`, `compile_s_N`).
Other backends keep XLA's defaults, which have not been measured against.

The backend is looked up on a program's first call, not at import: a multi-host run must
initialise `jax.distributed` before any backend starts.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

CPU_OPTIONS = {"xla_backend_optimization_level": 1}

log = logging.getLogger(__name__)


def compiler_options() -> dict[str, Any]:
    """The XLA options for a program holding the simulator, on the default backend."""
    return dict(_accepted(tuple(CPU_OPTIONS.items()))) if jax.default_backend() == "cpu" else {}


@functools.cache
def _accepted(options: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """The options this XLA accepts: each is tried on a one-line program once. An option a
    later XLA renamed or removed is left out with a warning (the programs still compile, only
    more slowly) instead of failing every program that holds the simulator."""
    accepted = []
    for name, value in options:
        try:
            jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(np.int32(0)).compile()
        except jax.errors.JaxRuntimeError as error:
            log.warning("XLA option %s=%r left out of the simulator's programs: %s", name,
                        value, error)
        else:
            accepted.append((name, value))
    return tuple(accepted)


class _Jitted:
    """`jax.jit(fn, **kwargs)` with `compiler_options()` when called at the top level (built on
    first use); inside another traced program, a plain `jax.jit` (options belong to the
    outermost program, which XLA compiles as one)."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any]):
        functools.update_wrapper(self, fn)
        self._fn, self._kwargs, self._top = fn, kwargs, None
        self._nested = jax.jit(fn, **kwargs)

    def _get(self):
        if self._top is None:
            self._top = jax.jit(self._fn, compiler_options=compiler_options(), **self._kwargs)
        return self._top

    def __call__(self, *args, **kwargs):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
        return (self._nested if traced else self._get())(*args, **kwargs)

    def __getattr__(self, name: str):
        # The rest of the jitted function's API (`lower`, `eval_shape`, `_cache_size`, ...)
        # is the top-level function's.
        if name.startswith("__") or name in ("_fn", "_kwargs", "_top", "_nested"):
            raise AttributeError(name)
        return getattr(self._get(), name)


def jit(fn: Callable | None = None, **kwargs) -> Any:
    """`jax.jit` for a program that holds the simulator; usable as `@jit` or `@jit(...)`."""
    if fn is None:
        return functools.partial(jit, **kwargs)
    return _Jitted(fn, kwargs)


_INSTRUCTION = re.compile(r"\s+(ROOT )?%?[\w.\-]+ = ")


def program_size(compiled: jax.stages.Compiled) -> dict[str, int]:
    """The size of a compiled program, from its optimised HLO: `instructions` (every HLO
    instruction, fused ones included) and `kernels` (fusions: the kernels XLA generates code
    for, each handed to LLVM on its own on CPU). Unlike compile seconds, they do not move
    with the machine's load; docs/simulator.md says how compile time follows them."""
    text = compiled.as_text()
    return {"instructions": sum(1 for line in text.splitlines() if _INSTRUCTION.match(line)),
            "kernels": text.count(" fusion(")}
