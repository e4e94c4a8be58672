"""Shared test setup: runs do not depend on the developer's environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tempest_jax.config import TOKEN_ENV


@pytest.fixture(autouse=True)
def no_server_token_from_the_environment(monkeypatch):
    """A $TEMPEST_TOKEN in the shell would make every test server demand a token."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def pytest_configure(config):
    """One persistent XLA compilation cache for the test process and the processes it starts:
    tests build many runs of the same few programs (learner update, inference, simulator), and
    each compiles once per machine instead of once per run."""
    cache = Path(tempfile.gettempdir()) / "tempest-jax-test-jit-cache"
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
