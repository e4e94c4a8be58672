"""Shared test setup: runs do not depend on the developer's environment."""

from __future__ import annotations

import pytest

from tempest_jax.config import TOKEN_ENV


@pytest.fixture(autouse=True)
def no_server_token_from_the_environment(monkeypatch):
    """A $TEMPEST_TOKEN in the shell would make every test server demand a token."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
