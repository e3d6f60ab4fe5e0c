import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from training.snn.losses import get_loss, loss_terms, per_step_ce, predictions, sdt_loss, tet_loss


def _hand_ce(logits, label):
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def test_losses_match_hand_computation():
    outputs = torch.tensor(
        [[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[0.0, 1.0, 0.0], [1.0, -1.0, 3.0]]],
        dtype=torch.float64,
    )  # [T=2, B=2, C=3]
    labels = torch.tensor([0, 2])
    mean = outputs.mean(0).tolist()
    sdt = (_hand_ce(mean[0], 0) + _hand_ce(mean[1], 2)) / 2
    steps = [
        (_hand_ce(outputs[t, 0].tolist(), 0) + _hand_ce(outputs[t, 1].tolist(), 2)) / 2
        for t in range(2)
    ]
    mse = ((outputs - 1.0) ** 2).mean().item()
    assert sdt_loss(outputs, labels).item() == pytest.approx(sdt, rel=1e-14)
    assert per_step_ce(outputs, labels).tolist() == pytest.approx(steps, rel=1e-14)
    expected = 0.95 * sum(steps) / 2 + 0.05 * mse
    assert tet_loss(outputs, labels, 0.05, 1.0).item() == pytest.approx(expected, rel=1e-14)
    assert predictions(outputs).tolist() == [0, 2]


def test_tet_with_one_step_and_no_mse_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    outputs, labels = torch.randn(1, 5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    torch.testing.assert_close(tet_loss(outputs, labels, 0.0), F.cross_entropy(outputs[0], labels))
    torch.testing.assert_close(sdt_loss(outputs, labels), F.cross_entropy(outputs[0], labels))


def test_tet_equals_sdt_when_outputs_are_constant_over_time():
    g = torch.Generator().manual_seed(1)
    outputs = torch.randn(1, 6, 3, generator=g, dtype=torch.float64).expand(4, 6, 3)
    labels = torch.randint(0, 3, (6,), generator=g)
    torch.testing.assert_close(
        tet_loss(outputs, labels, 0.0), sdt_loss(outputs, labels), rtol=1e-14, atol=0
    )


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 5),
    B=st.integers(1, 4),
    C=st.integers(2, 5),
    seed=st.integers(0, 10**6),
    scale=st.floats(0.01, 30.0),
)
def test_sdt_never_exceeds_tet_without_mse(T, B, C, seed, scale):
    # Lemma 4.1 via Jensen on the concave log-softmax.
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(T, B, C, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, C, (B,), generator=g)
    assert sdt_loss(outputs, labels) <= tet_loss(outputs, labels, 0.0) + 1e-12


def test_loss_terms_and_registry():
    outputs, labels = torch.zeros(2, 3, 4), torch.tensor([0, 1, 2])
    terms = loss_terms(outputs, labels, 0.05, 1.0)
    assert set(terms) == {"l_sdt", "l_tet", "l_steps", "correct"}
    assert get_loss("sdt") is sdt_loss
    torch.testing.assert_close(
        get_loss("tet", 0.1, 0.5)(outputs, labels), tet_loss(outputs, labels, 0.1, 0.5)
    )
    with pytest.raises(ValueError, match="unknown method 'ce'"):
        get_loss("ce")


def test_bad_shapes_and_lambda():
    with pytest.raises(ValueError, match=r"time-major \[T, B, C\]"):
        sdt_loss(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        tet_loss(torch.zeros(2, 3, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="lambda must be in"):
        tet_loss(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long), lamb=1.5)
