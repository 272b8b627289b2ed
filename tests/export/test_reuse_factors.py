"""qnet's one reuse-factor rule (qnet.hw.options) agrees with hls4ml's own."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest

from qnet.hw.options import valid_reuse_factors


def _backend():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import hls4ml
    return hls4ml.backends.get_backend("Vitis")


@pytest.mark.parametrize(
    ("n_in", "n_out"),
    [(1, 1), (2, 3), (16, 8), (8, 16), (7, 5), (12, 18), (27, 4), (64, 32), (100, 10), (36, 36)],
)
def test_valid_reuse_factors_match_hls4ml(n_in: int, n_out: int) -> None:
    assert valid_reuse_factors(n_in, n_out) == list(_backend().get_valid_reuse_factors(n_in, n_out))
