"""Fixtures of the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hls_cache(tmp_path_factory):
    """Compiled exports shared within a session, keyed by the caller's key."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("hls")

    def get(key, build):
        if key not in cache:
            cache[key] = build(root / "_".join(map(str, key)))
        return cache[key]

    return get
