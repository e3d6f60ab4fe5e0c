"""The study's connectivity stage: decisions on hand-made barriers, and end to end on tiny runs."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.evidence.study_connectivity import (
    CONNECTED_MARGIN,
    collect_profiles,
    connected_table,
    connectivity_jobs,
    connectivity_markdown,
)
from analysis.evidence.study_design import SCALES, STAGES, paired_jobs
from analysis.pipeline.jobs import run_jobs


def _barriers(values: list[float], kind: str = "sdt_tet") -> pd.DataFrame:
    rows = [
        {
            "kind": kind,
            "pair": i,
            "aligned": True,
            "path": "bezier",
            "bn": "recomputed",
            "spikes": "hard",
            "metric": "error",
            "barrier": v,
        }
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_the_margin_and_the_stage_are_fixed_in_the_design():
    assert CONNECTED_MARGIN.value == 0.02 and not CONNECTED_MARGIN.relative
    assert STAGES.index("connectivity") == STAGES.index("subsets") + 1
    # make study stays within its time budget: at full scale the stage runs only when asked for
    assert not SCALES["full"].connectivity_in_all
    assert SCALES["demo"].connectivity_in_all and SCALES["tiny"].connectivity_in_all


@pytest.mark.parametrize(
    "values, decision",
    [
        ([0.001, 0.002, 0.0, 0.003, 0.001, 0.002], "connected"),
        ([0.20, 0.22, 0.19, 0.25, 0.21, 0.18], "barrier"),
        ([0.0, 0.3, 0.0, 0.01], "inconclusive"),
    ],
)
def test_connected_is_decided_by_the_paired_rule_against_the_margin(values, decision):
    table = connected_table(_barriers(values))
    assert list(table.decision) == [decision] and list(table.family) == ["primary"]
    assert table.delta[0] == CONNECTED_MARGIN.value


@pytest.mark.slow
def test_the_stage_runs_end_to_end_on_tiny_runs(tmp_path):
    scale, root, data = SCALES["tiny"], tmp_path / "runs", str(tmp_path / "data")
    assert run_jobs(paired_jobs(root, "mnist1d", scale, data), 2, lambda message: None)
    jobs = connectivity_jobs(root, scale)
    names = sorted(job.name for job in jobs)
    assert names == [
        "connect sdt_sdt pair 0",
        "connect sdt_tet pair 0",
        "connect sdt_tet pair 1",
        "connect tet_tet pair 0",
        "spike gap paired",
    ]
    assert run_jobs(jobs, 2, lambda message: None)
    figures = tmp_path / "figures"
    figures.mkdir()
    text = connectivity_markdown(root, figures)
    assert "Mode connectivity" in text and "(primary)" in text and "Surrogate-to-spike" in text
    connected = pd.read_csv(figures / "study_connected.csv")
    assert len(connected) == 3 * 3 * 2  # kinds x paths x aligned (dry run: every curve)
    assert set(connected.decision) <= {"connected", "barrier", "inconclusive"}
    assert (figures / "study_spike_gap.csv").exists()
    assert "](study_connectivity.png)" in text and (figures / "study_connectivity.pdf").exists()
    means = pd.read_csv(figures / "study_connectivity.csv")
    profiles = collect_profiles(root)
    for _, r in means.sample(5, random_state=0).iterrows():
        same = (profiles.kind == r.kind) & (profiles.aligned == r.aligned) & (profiles.t == r.t)
        same &= (profiles.path == r.path) & (profiles.bn == r.bn) & (profiles.spikes == "hard")
        assert r["mean"] == pytest.approx(profiles[same].error.mean(), rel=1e-12)
        assert r.n == same.sum()
