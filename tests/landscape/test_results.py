"""Result files: plain JSON (NaN -> null), atomic writes, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landscape import EigenResult, TraceResult
from toolkit.io import atomic_write, load_json, save_json, save_npz, to_plain


def test_json_round_trip_is_plain_and_atomic(tmp_path):
    eigen = EigenResult(
        eigenvalues=torch.tensor([2.0, 1.0], dtype=torch.float64),
        eigenvectors=torch.eye(2),
        residuals=torch.tensor([1e-4, float("nan")]),
        converged=torch.tensor([True, False]),
        num_matvecs=12,
        num_steps=12,
        which="LA",
        tol=1e-3,
    )
    payload = {"top": eigen.to_dict(), "trace": TraceResult(3.0, 0.1, 9, "hutch++").to_dict()}
    path = save_json(tmp_path / "sub" / "result.json", payload)
    loaded = load_json(path)
    assert loaded["top"]["eigenvalues"] == [2.0, 1.0] and "eigenvectors" not in loaded["top"]
    assert loaded["top"]["residuals"][1] is None and loaded["top"]["converged"] == [True, False]
    assert loaded["trace"] == {"mean": 3.0, "stderr": 0.1, "num_matvecs": 9, "method": "hutch++"}
    assert json.loads(path.read_text()) == loaded
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp files left


def test_failed_write_keeps_the_old_file(tmp_path):
    path = save_json(tmp_path / "result.json", {"a": 1})

    def interrupted(file):
        file.write(b'{"a": 2, "trunc')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert load_json(path) == {"a": 1} and len(list(tmp_path.iterdir())) == 1


def test_npz_and_plain_conversion(tmp_path):
    path = save_npz(tmp_path / "arrays.npz", {"grid": torch.linspace(0, 1, 5), "n": 3})
    with np.load(path) as arrays:
        assert arrays["grid"].shape == (5,) and int(arrays["n"]) == 3
    assert to_plain({"x": np.float32(1.5), "d": torch.float64, 2: (1, float("inf"))}) == {
        "x": 1.5,
        "d": "torch.float64",
        "2": [1, None],
    }
