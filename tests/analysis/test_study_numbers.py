"""Every number of the committed study reports, recomputed from the committed CSVs.

``study_runs.csv`` (one row per run x loss x measure) is the only input: the per-pair
differences, the verdicts, the population and subset tables are recomputed from it and compared
with the committed CSVs, and STUDY.md is rendered again from the recomputed tables and must equal
the committed file character for character (up to its connectivity section, whose decisions
must be rows of the committed ``study_connected.csv``).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.evidence.study_connectivity import _number
from analysis.evidence.study_report import FILES, read_one_draw, read_tables, render
from analysis.pipeline.jobs import REPO

REPORTS = ["figures", "figures/study-demo"]


def _same(recomputed: pd.DataFrame, committed: pd.DataFrame, name: str) -> None:
    recomputed = recomputed.reset_index(drop=True)
    assert list(recomputed.columns) == list(committed.columns), name
    assert len(recomputed) == len(committed), name
    for column in committed.columns:
        mine, theirs = recomputed[column], committed[column]
        if pd.api.types.is_numeric_dtype(theirs) and not pd.api.types.is_bool_dtype(theirs):
            pd.testing.assert_series_equal(
                mine.astype(float), theirs.astype(float), rtol=1e-12, atol=0, obj=f"{name}.{column}"
            )
        else:
            assert mine.astype(str).tolist() == theirs.astype(str).tolist(), f"{name}.{column}"


@pytest.fixture(scope="module", params=REPORTS)
def report(request):
    """``(folder, tables, settings)``: one recomputation per committed report."""
    figures = REPO / request.param
    tables, settings = read_tables(figures)
    return figures, tables, settings


def test_every_table_is_recomputed_from_the_runs(report):
    figures, tables, _ = report
    for key in ("differences", "paired", "population", "subsets"):
        path = figures / FILES[key]
        if not path.exists() or not path.read_text().strip():
            assert getattr(tables, key).empty, f"{path} is missing or empty"
            continue
        _same(getattr(tables, key), pd.read_csv(path), FILES[key])


def test_study_md_is_rendered_from_the_recomputed_tables(report):
    figures, tables, settings = report
    text = (figures / "STUDY.md").read_text()
    names = re.findall(r"^!\[(\w+)\]\(\1\.png\)$", text, flags=re.MULTILINE)
    assert names and all((figures / f"{name}.png").exists() for name in names)
    paired_part, _, connectivity = text.partition("\n## Mode connectivity")
    assert render(tables, read_one_draw(), settings, names) == paired_part
    connected = figures / "study_connected.csv"
    if connectivity:  # every decision of the section is a row of its committed table
        for _, r in pd.read_csv(connected).iterrows():
            row = (
                f"| {r.kind.replace('_', '↔')} | {r.path} | {'yes' if r.aligned else 'no'} | "
                f"{r.n} | {_number(r['mean'])} [{_number(r.ci_low)}, {_number(r.ci_high)}] |"
            )
            assert row in connectivity and r.decision in connectivity
