"""Flat parameter vectors and named parameter subsets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from landscape import flatten, parameter_groups, select_parameters, unflatten


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4))
def test_flatten_unflatten_round_trip(shape_list):
    tensors = {f"p{i}": torch.randn(tuple(shape)) for i, shape in enumerate(shape_list)}
    vector = flatten(tensors)
    assert vector.numel() == sum(t.numel() for t in tensors.values())
    back = unflatten(vector, {name: t.shape for name, t in tensors.items()})
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor)


def test_groups_and_selection():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    model[2].bias.requires_grad_(False)
    assert parameter_groups(model) == {
        "0": ["0.weight", "0.bias"],
        "1": ["1.weight", "1.bias"],
        "2": ["2.weight"],
    }
    assert select_parameters(model, prefixes=["1."]) == ["1.weight", "1.bias"]
    assert select_parameters(model, layers=["0", "2"]) == ["0.weight", "0.bias", "2.weight"]
    assert len(select_parameters(model)) == 5


def test_errors():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="unknown layer"):
        select_parameters(model, layers=["conv"])
    with pytest.raises(ValueError, match="selection .* is empty"):
        select_parameters(model, prefixes=["conv"])
    with pytest.raises(ValueError, match="flatten needs at least one tensor"):
        flatten({})
    with pytest.raises(ValueError, match="vector must have shape"):
        unflatten(torch.zeros(3), {"w": torch.Size([2])})
