"""Flatness measures: the command on a tiny checkpoint, and the TET = mean_t L_t decomposition."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from analysis.flatness import main
from analysis.flatness_measures import MEASURES, FlatnessSettings, checkpoint_rows, parse_loss
from analysis.inputs import DataSpec, load_objective
from training import checkpoint
from training.models import build

KWARGS = dict(num_classes=10, image_size=8, hidden=(4,), T=3)  # 310 parameters
FAST = [
    "--samples",
    "40",
    "--trace-matvecs",
    "6",
    "--lanczos-max-steps",
    "8",
    "--epsilon-steps",
    "2",
    "--adaptive-steps",
    "2",
    "--average-samples",
    "2",
]


def _save(path, method: str, seed: int, lamb: float = 0.05) -> None:
    torch.manual_seed(seed)
    model = build("spiking_mlp", **KWARGS)
    config = {
        "model": "spiking_mlp",
        "dataset": "digits",
        "T": 3,
        "method": method,
        "tet_lambda": lamb,
        "tet_phi": 1.0,
        "seed": seed,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    checkpoint.save(path, model, "spiking_mlp", KWARGS, config, epoch=0, step=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = [root / "sdt" / "last.pt", root / "tet" / "last.pt", root / "tet0" / "last.pt"]
    _save(paths[0], "sdt", 0)
    _save(paths[1], "tet", 1)
    _save(paths[2], "tet", 2, lamb=0.0)
    return paths


def test_command_writes_one_row_per_checkpoint_loss_measure(checkpoints, tmp_path):
    assert main([*map(str, checkpoints[:2]), *FAST, "--out", str(tmp_path), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "flatness.csv")
    losses = ["sdt", "tet", "ce_t0", "ce_t1", "ce_t2"]
    assert len(table) == 2 * (2 * len(MEASURES) + 3 * 2)
    assert table.groupby("checkpoint").loss.unique().map(list).tolist() == [losses, losses]
    assert set(table[table.loss == "ce_t1"].measure) == {"lambda_max", "trace"}
    assert table.value.notna().all() and not list(tmp_path.glob(".*.tmp"))
    record = json.loads((tmp_path / "flatness.json").read_text())
    assert record["settings"]["samples"] == 40 and record["settings"]["adaptive_p"] == "inf"
    assert record["provenance"]["torch"] and len(record["checkpoints"]) == 2
    assert main([str(checkpoints[0]), *FAST, "--out", str(tmp_path), "--quiet"]) == 1  # exists


def test_lambda_max_matches_the_dense_hessian(checkpoints):
    settings = FlatnessSettings(
        samples=40, dtype="float64", lanczos_tol=1e-8, lanczos_max_steps=200, per_step=False
    )
    rows, _ = checkpoint_rows(checkpoints[0], settings, ["sdt"])
    found = {row[5]: row[6] for row in rows}
    objective = load_objective(checkpoints[0], DataSpec(samples=40), dtype=torch.float64).objective
    dense = torch.stack([objective.hvp(e) for e in torch.eye(objective.num_params).double()])
    dense = (dense + dense.T) / 2
    assert math.isclose(found["lambda_max"], float(torch.linalg.eigvalsh(dense)[-1]), rel_tol=1e-6)
    scale = objective.params.abs()
    normalized = scale[:, None] * dense * scale[None, :]
    assert math.isclose(
        found["normalized_lambda_max"], float(torch.linalg.eigvalsh(normalized)[-1]), rel_tol=1e-6
    )


def test_tet_trace_is_the_mean_of_the_per_step_traces(checkpoints):
    # With lambda = 0, L_TET = mean_t L_t, so H_TET = mean_t H_t; Hutchinson with the same probes
    # (one stream per measure, shared by every loss) is linear in the operator.
    settings = FlatnessSettings(
        samples=40, dtype="float64", trace_method="hutchinson", trace_matvecs=20
    )
    rows, _ = checkpoint_rows(checkpoints[2], settings, ["tet", "ce_t0", "ce_t1", "ce_t2"])
    trace = {row[4]: row[6] for row in rows if row[5] == "trace"}
    per_step = sum(trace[f"ce_t{t}"] for t in range(3)) / 3
    assert math.isclose(trace["tet"], per_step, rel_tol=1e-10, abs_tol=1e-12)
    objective = load_objective(
        checkpoints[2], DataSpec(samples=40), loss="tet", dtype=torch.float64
    ).objective
    dense = torch.stack([objective.hvp(e) for e in torch.eye(objective.num_params).double()])
    exact = [
        load_objective(
            checkpoints[2], DataSpec(samples=40), time_step=t, dtype=torch.float64
        ).objective
        for t in range(3)
    ]
    steps = [torch.stack([o.hvp(e) for e in torch.eye(o.num_params).double()]) for o in exact]
    torch.testing.assert_close(dense, sum(steps) / 3, rtol=1e-10, atol=1e-12)


def test_parse_loss():
    assert parse_loss("tet") == ("tet", None) and parse_loss("ce_t3") == ("checkpoint", 3)
    with pytest.raises(ValueError, match="ce_t"):
        parse_loss("l_t1")
