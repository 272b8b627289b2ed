"""Session-wide test settings."""

from __future__ import annotations

import os

# pytest -n 2 runs two workers on two cores: one thread each. Two torch threads per worker
# oversubscribe the machine and made small Brevitas models ~20x slower here.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: object) -> None:
    try:
        import torch
    except ImportError:  # qnet.hw tests run without torch
        return
    torch.set_num_threads(1)
