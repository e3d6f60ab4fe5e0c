"""Shared test fixtures: float64 generators and the repository root."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tests compare float64 numbers to 1e-10; fix the thread count so they cannot depend on it.
    # One thread also keeps the tiny test models fast when the CPU is shared. Session-wide, so
    # that module-scoped fixtures (built before any test) run on one thread too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
