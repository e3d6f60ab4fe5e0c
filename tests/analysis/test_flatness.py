"""Flatness measures: the command on a tiny checkpoint, and the TET = mean_t L_t decomposition."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from analysis.flatness import main
from analysis.measures.flatness import HEADER, SUBSETS, FlatnessSettings, checkpoint_rows
from analysis.measures.inputs import DataSpec, load_input, parse_loss
from analysis.measures.registry import loss_measures
from tests.helpers import dense_hessian, objective, save_mlp
from toolkit.errors import ConfigError
from training.runs import checkpoint

FAST = [
    "--samples",
    "40",
    "--ascent-samples",
    "32",
    "--per-step-samples",
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


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [
        save_mlp(root / "sdt" / "last.pt", "sdt", 0, T=3),
        save_mlp(root / "tet" / "last.pt", "tet", 1, T=3),
        save_mlp(root / "tet0" / "last.pt", "tet", 2, T=3, lamb=0.0),
    ]


def _rows(path, settings: FlatnessSettings, losses: list[str]) -> list[dict]:
    found = checkpoint.read(path)
    inputs = {subset: load_input(found, settings.data_spec(subset)) for subset in SUBSETS}
    return checkpoint_rows(inputs, settings, losses=losses)


def test_command_writes_one_row_per_checkpoint_loss_measure(checkpoints, tmp_path):
    assert main([*map(str, checkpoints[:2]), *FAST, "--out", str(tmp_path), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "flatness.csv")
    assert tuple(table.columns) == HEADER
    losses = ["sdt", "tet", "ce_t0", "ce_t1", "ce_t2"]
    sweep = len(FlatnessSettings().adaptive_sweep)  # adaptive_worst@<radius> rows
    assert len(table) == 2 * (2 * (len(loss_measures()) + sweep) + 3 * 2)
    assert table.groupby("checkpoint").loss.unique().map(list).tolist() == [losses, losses]
    assert set(table[table.loss == "ce_t1"].measure) == {"lambda_max", "trace"}
    assert table.value.notna().all() and not list(tmp_path.glob(".*.tmp"))
    worst = table[table.measure.str.startswith("adaptive_worst")]
    assert sorted(set(worst.parameter)) == [0.005, 0.01, 0.02]
    assert worst.first_order.notna().all() and (worst.first_order >= 0).all()
    assert set(table[table.measure == "lambda_max"].samples) == {40}
    assert set(worst.samples) == {32}  # the ascents run on their own, smaller subset
    record = json.loads((tmp_path / "flatness.json").read_text())
    assert record["settings"]["samples"] == 40 and record["settings"]["adaptive_p"] == "inf"
    assert record["provenance"]["torch"] and len(record["checkpoints"]) == 2
    assert main([str(checkpoints[0]), *FAST, "--out", str(tmp_path), "--quiet"]) == 2  # exists


def test_lambda_max_matches_the_dense_hessian(checkpoints):
    settings = FlatnessSettings(
        samples=40, dtype="float64", lanczos_tol=1e-8, lanczos_max_steps=200, per_step=False
    )
    rows = _rows(checkpoints[0], settings, ["sdt"])
    found = {row["measure"]: row["value"] for row in rows}
    sdt = objective(checkpoints[0])
    dense = dense_hessian(sdt)
    dense = (dense + dense.T) / 2
    assert math.isclose(found["lambda_max"], float(torch.linalg.eigvalsh(dense)[-1]), rel_tol=1e-6)
    scale = sdt.params.abs()
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
    rows = _rows(checkpoints[2], settings, ["tet", "ce_t0", "ce_t1", "ce_t2"])
    trace = {row["loss"]: row["value"] for row in rows if row["measure"] == "trace"}
    per_step = sum(trace[f"ce_t{t}"] for t in range(3)) / 3
    assert math.isclose(trace["tet"], per_step, rel_tol=1e-10, abs_tol=1e-12)
    dense = dense_hessian(objective(checkpoints[2], "tet"))
    steps = [dense_hessian(objective(checkpoints[2], time_step=t)) for t in range(3)]
    torch.testing.assert_close(dense, sum(steps) / 3, rtol=1e-10, atol=1e-12)


def test_parse_loss():
    assert parse_loss("tet") == ("tet", None) and parse_loss("ce_t3") == ("checkpoint", 3)
    with pytest.raises(ValueError, match="ce_t"):
        parse_loss("l_t1")


def test_fixed_lambda_tet_is_tet_at_that_lambda_for_every_run(checkpoints):
    # tet@0.05 of the run trained with lambda = 0 is its L_TET at lambda = 0.05; the run's own
    # L_TET (lambda = 0) is a different function
    settings = FlatnessSettings(
        samples=40, dtype="float64", per_step=False, fixed_tet_lambda=0.05, lanczos_tol=1e-8
    )
    rows = _rows(checkpoints[2], settings, settings.loss_names(3))
    value = {(r["loss"], r["measure"]): r["value"] for r in rows if r["measure"] == "lambda_max"}
    found = checkpoint.read(checkpoints[1])  # trained with lambda = 0.05
    same = {s: load_input(found, settings.data_spec(s)) for s in SUBSETS}
    own = {
        r["loss"]: r["value"]
        for r in checkpoint_rows(same, settings)
        if r["measure"] == "lambda_max"
    }
    assert own["tet"] == own["tet@0.05"]  # the same function: copied, not re-run
    copied = [r for r in checkpoint_rows(same, settings) if r["loss"] == "tet@0.05"]
    assert copied and all(r["seconds"] == 0.0 for r in copied)
    assert value["tet", "lambda_max"] != pytest.approx(value["tet@0.05", "lambda_max"], rel=1e-3)


def test_data_chunks_are_disjoint_subsets(checkpoints):
    found = checkpoint.read(checkpoints[0])
    settings = [FlatnessSettings(samples=20, data_chunk=c) for c in range(3)]
    inputs = [load_input(found, s.data_spec()) for s in settings]
    rows = [{tuple(x) for x in i.loader.x.flatten(1).tolist()} for i in inputs]
    assert all(len(r) == 20 for r in rows)
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    with pytest.raises(ConfigError, match="data chunk 99 of 20 samples needs 2000"):
        load_input(found, FlatnessSettings(samples=20, data_chunk=99).data_spec())


def test_every_subset_of_a_chunk_lies_in_that_chunk(checkpoints):
    """The per-step and ascent subsets of chunk k are the first samples of chunk k (chunk 0:
    the first of the permutation, as without chunks), so a subset check varies every measure's
    data."""
    found = checkpoint.read(checkpoints[0])

    def rows(settings, subset):
        batch = load_input(found, settings.data_spec(subset)).loader.x.flatten(1).tolist()
        return {tuple(x) for x in batch}

    plain = FlatnessSettings(samples=20, ascent_samples=8, per_step_samples=4)
    assert rows(plain, "ascent") == {
        tuple(x) for x in load_input(found, DataSpec(samples=8)).loader.x.flatten(1).tolist()
    }
    chunks = [replace(plain, data_chunk=c) for c in range(3)]
    for subset, size in (("ascent", 8), ("per_step", 4)):
        parts = [rows(s, subset) for s in chunks]
        assert all(len(p) == size and p <= rows(s, "main") for p, s in zip(parts, chunks))
        assert not parts[0] & parts[1] and not parts[1] & parts[2] and not parts[0] & parts[2]
