"""Directions: filter normalization (Li et al.), interpolation, PCA vs sklearn, file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import directions as dirs
from training.models import build


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build("digits_snn", channels=(4, 4), T=2).double()
    return {name: p.detach() for name, p in model.named_parameters()}


def test_filter_normalization_gives_each_filter_its_weight_norm(weights, generator):
    direction = dirs.random_direction(weights, generator)
    for name, w in weights.items():
        d = direction[name]
        if w.ndim <= 1:
            assert torch.count_nonzero(d) == 0, f"{name}: biases/BN must be zero by default"
            continue
        d_norms = d.flatten(1).norm(dim=1)
        w_norms = w.flatten(1).norm(dim=1)
        torch.testing.assert_close(d_norms, w_norms, rtol=1e-12, atol=0)


def test_filter_normalize_keeps_zero_filters_and_handles_1d():
    d = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    out = dirs.filter_normalize(d, w)
    assert out[0].abs().sum() == 0 and torch.isclose(out[1].norm(), torch.tensor(2.0).double())
    torch.testing.assert_close(
        dirs.filter_normalize(torch.tensor([2.0, -1.0]), torch.tensor([-3.0, 5.0])),
        torch.tensor([3.0, -5.0]),
    )


def test_biasbn_kept_as_in_li_et_al(weights, generator):
    direction = dirs.random_direction(weights, generator, ignore_biasbn=False)
    for name, w in weights.items():
        if w.ndim <= 1:
            assert torch.equal(direction[name], w), f"{name}: Li et al. copy the weight"


def test_layer_and_no_normalization(weights):
    layer = dirs.random_direction(weights, torch.Generator().manual_seed(3), "layer")
    raw = dirs.random_direction(weights, torch.Generator().manual_seed(3), "none")
    for name, w in weights.items():
        if w.ndim > 1:
            assert torch.isclose(layer[name].norm(), w.norm(), rtol=1e-12)
            torch.testing.assert_close(
                layer[name] / layer[name].norm(), raw[name] / raw[name].norm()
            )


def test_directions_are_seeded(weights):
    first = dirs.random_direction(weights, torch.Generator().manual_seed(7))
    second = dirs.random_direction(weights, torch.Generator().manual_seed(7))
    assert all(torch.equal(first[n], second[n]) for n in weights)


def test_cosine_and_orthogonalize(weights, generator):
    d1 = dirs.random_direction(weights, generator)
    d2 = dirs.random_direction(weights, generator)
    assert dirs.cosine_similarity(d1, d1) == pytest.approx(1.0, abs=1e-12)
    assert abs(dirs.cosine_similarity(d1, d2)) < 0.3  # independent draws in ~400 dimensions
    assert dirs.cosine_similarity(dirs.orthogonalize(d2, d1), d1) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="zero direction"):
        dirs.orthogonalize(d1, {n: torch.zeros_like(t) for n, t in d1.items()})


def test_normalization_errors(weights):
    with pytest.raises(ValueError, match="normalization must be one of"):
        dirs.random_direction(weights, torch.Generator(), "weight")
    with pytest.raises(ValueError, match="without a weight"):
        dirs.normalize_direction({"nope": torch.ones(2)}, weights)


def test_difference_includes_float_buffers_only():
    start = {"w": torch.ones(2, 2), "running_var": torch.ones(2), "count": torch.tensor(3)}
    end = {"w": 3 * torch.ones(2, 2), "running_var": torch.zeros(2), "count": torch.tensor(5)}
    delta = dirs.difference(end, start)
    assert set(delta) == {"w", "running_var"} and torch.equal(delta["w"], 2 * torch.ones(2, 2))
    with pytest.raises(ValueError, match="differ"):
        dirs.difference({"w": torch.ones(3)}, start)


def test_pca_matches_sklearn_and_reconstructs_a_planar_trajectory(generator):
    from sklearn.decomposition import PCA

    centre = {
        "a": torch.randn(5, 3, generator=generator, dtype=torch.float64),
        "b": torch.randn(4, generator=generator, dtype=torch.float64),
    }
    basis = torch.linalg.qr(torch.randn(19, 2, generator=generator, dtype=torch.float64))[0]
    coords = torch.randn(6, 2, generator=generator, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    flat = torch.cat([centre["a"].reshape(-1), centre["b"]])
    points = [
        {"a": (flat + basis @ c)[:15].view(5, 3), "b": (flat + basis @ c)[15:]} for c in coords
    ]
    result = dirs.pca_directions(points, centre, 2)
    matrix = torch.stack([torch.cat([p["a"].reshape(-1), p["b"]]) - flat for p in points]).numpy()
    reference = PCA(n_components=2).fit(matrix)
    np.testing.assert_allclose(
        result.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-10
    )
    np.testing.assert_allclose(result.singular_values, reference.singular_values_, rtol=1e-10)
    # The trajectory lies in the span of the two components, so projection reconstructs it.
    rebuilt = result.projection @ torch.stack(
        [torch.cat([d["a"].reshape(-1), d["b"]]) for d in result.directions]
    )
    torch.testing.assert_close(rebuilt, torch.as_tensor(matrix), rtol=0, atol=1e-10)
    projected = dirs.project(points, centre, result.directions)
    torch.testing.assert_close(projected, result.projection, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="at least 3"):
        dirs.pca_directions(points[:2], centre, 2)


def test_eigen_directions_are_unit_and_named():
    vectors = torch.arange(12.0, dtype=torch.float64).view(6, 2)
    found = dirs.eigen_directions(vectors, {"w": torch.Size([2, 2]), "b": torch.Size([2])})
    assert len(found) == 2 and found[0]["w"].shape == (2, 2)
    for d, column in zip(found, vectors.T):
        assert dirs.direction_norm(d) == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(torch.cat([d["w"].reshape(-1), d["b"]]), column / column.norm())


def test_save_and_load_directions_bitwise(tmp_path, weights, generator):
    found = [dirs.random_direction(weights, generator) for _ in range(2)]
    path = dirs.save_directions(
        tmp_path / "d.npz", found, {"seed": 0}, {"trajectory": np.ones((3, 2))}
    )
    loaded, metadata, extras = dirs.load_directions(path)
    assert metadata == {"seed": 0} and extras["trajectory"].shape == (3, 2)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(found, loaded) for n in weights)
