"""Fixtures for the engine tests: planted-spectrum matrices, a tiny SNN and a smooth ANN."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from training.models import build
from training.snn.losses import sdt_loss


def planted(eigenvalues: Tensor, generator: torch.Generator) -> Tensor:
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q`` (float64)."""
    n = eigenvalues.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    matrix = q @ torch.diag(eigenvalues.to(torch.float64)) @ q.T
    return (matrix + matrix.T) / 2


@pytest.fixture
def tiny_snn() -> nn.Module:
    """Spiking MLP 16 -> 6 -> 3, T = 2: 123 parameters, float64."""
    torch.manual_seed(0)
    model = build("spiking_mlp", num_classes=3, image_size=4, hidden=(6,), T=2)
    return model.double().eval()


@pytest.fixture
def snn_batches() -> list[tuple[Tensor, Tensor]]:
    """Two batches of unequal size (5 and 3) of 1x4x4 inputs and labels in {0, 1, 2}."""
    generator = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(8, 1, 4, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=generator)
    return [(x[:5], y[:5]), (x[5:], y[5:])]


@pytest.fixture
def snn_loss():
    return sdt_loss


@pytest.fixture
def tanh_mlp() -> nn.Module:
    """Smooth ANN 4 -> 8 -> 3 with tanh (67 parameters), float64."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.fixture
def mlp_batches() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(12, 4, generator=generator, dtype=torch.float64)
    return [(x, torch.randint(0, 3, (12,), generator=generator))]
