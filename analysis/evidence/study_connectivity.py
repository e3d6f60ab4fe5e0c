"""The study's connectivity stage: barriers between MNIST-1D minima and the surrogate-to-spike gap.

Design, committed before any connectivity result was looked at (issue 20):

**Pairs of minima** (benchmark ``mnist1d``, static encoding, the paired runs' ``last.pt``): for
every pair ``i``, ``sdt_tet``: SDT_i <-> TET_i (same seed and data draw); and as seed-to-seed
baselines ``sdt_sdt``: SDT_i <-> SDT_{i+1} and ``tet_tet``: TET_i <-> TET_{i+1} (different
seeds and different data draws; the curve is fitted and evaluated on the first run's draw).
Each is ``analysis/connect.py`` with :data:`CONNECT_FLAGS` of the scale: the straight line, a
quadratic Bezier curve and a polygonal chain fitted to L_SDT with the first run's optimizer,
learning rate, batch size and epochs, unaligned and aligned by weight matching, on the first
run's 1,024-sample evaluation subset of its training split (seed 0).

**Connected** (:data:`CONNECTED_ENDPOINT`, :data:`CONNECTED_MARGIN`): the error barrier
(Frankle et al. 2020: the largest excess of the error over the straight line between the end
errors) of the aligned Bezier curve, BatchNorm statistics recomputed, hard spikes. Over the
pairs, the study's paired rule (``analysis.evidence.claims.compare_paired``, barrier against 0)
decides: ``connected`` when the 90 % t-interval of the mean barrier lies inside the margin
(TOST at 5 %, the rule's equivalence), ``barrier`` when the 95 % interval and the sign-flip test
put the mean above 0 and the interval is not inside the margin, ``inconclusive`` otherwise.
The margin is 2 points of error: Frankle et al. call two networks linearly connected ("stable")
when their error barrier is within about 2 % (as recalled; check the paper before citing); it is
also below any accuracy difference the study's other claims treat as meaningful (0.5 points is
the accuracy margin of a *difference of means*, a barrier is a single path's excess). Every other
path, alignment and pair kind gets the same rule as a secondary, descriptive row.

**The surrogate-to-spike gap**: ``analysis/spike_gap.py`` on every paired MNIST-1D checkpoint
and every population run that met the stopping criterion, on :data:`GAP_SAMPLES` samples of its
test split; the metric is ``spike_gap_abs = |acc(smooth forward) - acc(hard spikes)|``, the claim
(SAST, Nicholson 2026: flatter minima have the smaller gap) is **TET lower**, decided by the
study's paired rule (``compare_paired`` on the pairs' values from ``study_tables``) with the
absolute margin :data:`GAP_MARGIN`, 0.5 points: the study's accuracy margin, since the gap is a
difference of two accuracies (a margin relative to SDT's mean would be undefined where SDT's gap
is 0). Over the population, Kendall's tau and Jiang et al.'s psi of the gap with every flatness
measure, with the population table's permutation p-values (descriptive: the runs share seeds,
draws and a grid).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.evidence.claims import compare_paired, t_interval
from analysis.evidence.study_design import Margin, StudyScale, met_criterion
from analysis.evidence.study_tables import (
    collect_runs,
    metric_values,
    paired_differences,
    population_table,
    run_folder_of,
)
from analysis.pipeline.jobs import Job, command_line
from analysis.plots.connectivity import study_profiles_figure
from analysis.plots.style import save_figure, save_table

__all__ = [
    "KINDS",
    "CONNECT_FLAGS",
    "GAP_SAMPLES",
    "CONNECTED_ENDPOINT",
    "CONNECTED_MARGIN",
    "GAP_METRIC",
    "GAP_MARGIN",
    "connectivity_jobs",
    "collect_barriers",
    "collect_profiles",
    "profile_means",
    "barrier_table",
    "connected_table",
    "gap_values",
    "gap_table",
    "gap_correlations",
    "connectivity_markdown",
]

BENCHMARK = "mnist1d"
KINDS = ("sdt_tet", "sdt_sdt", "tet_tet")
CONNECT_FLAGS = {
    "full": (),
    "demo": ("--curves", "bezier", "--num-points", "5", "--epochs", "5", "--samples", "512"),
    "tiny": ("--dry-run",),
}
"""``analysis/connect.py`` flags per scale (full: its defaults, every curve at the run's epochs)."""
GAP_SAMPLES = {"full": 5000, "demo": 2000, "tiny": 64}
CONNECTED_ENDPOINT = {
    "kind": "sdt_tet",
    "path": "bezier",
    "aligned": True,
    "bn": "recomputed",
    "spikes": "hard",
    "metric": "error",
}
CONNECTED_MARGIN = Margin(
    0.02,
    False,
    "2 points of error: Frankle et al. (2020) call minima linearly connected when the error "
    "barrier is about 0, with about 2 % as the practical cut-off (recalled, not re-checked)",
)
GAP_METRIC = "spike_gap_abs"
GAP_MARGIN = Margin(
    0.005, False, "0.5 points, the study's accuracy margin: the gap is a difference of accuracies"
)


def _runs(folder: Path) -> dict[tuple[str, int], Path]:
    """``(method, pair) -> last.pt`` of the finished paired runs under ``folder``."""
    found = {}
    for path in sorted(folder.rglob("last.pt")):
        config = json.loads((path.parent / "config.json").read_text())
        found[config["method"], int(config["seed"])] = path
    return found


def _connect_job(a: Path, b: Path, out: Path, flags: tuple, name: str) -> Job:
    line = command_line("analysis/connect.py", a, b, "--out", out, "--overwrite", "--quiet", *flags)
    return Job(name, (line,), (out / "connect_barriers.csv",))


def connectivity_jobs(root: Path, scale: StudyScale) -> list[Job]:
    """The connect jobs of every pair of minima and the spike-gap jobs (after ``paired`` and
    ``population``): ``root/connectivity/<kind>/pair<i>/`` and ``root/connectivity/spike_gap/``."""
    if BENCHMARK not in scale.pairs:
        return []
    runs, out = _runs(root / BENCHMARK), root / "connectivity"
    flags = CONNECT_FLAGS.get(scale.name, ())
    jobs = []
    pairs = sorted({pair for _, pair in runs})
    for pair in pairs:
        ends = {
            "sdt_tet": (("sdt", pair), ("tet", pair)),
            "sdt_sdt": (("sdt", pair), ("sdt", pair + 1)),
            "tet_tet": (("tet", pair), ("tet", pair + 1)),
        }
        for kind, (a, b) in ends.items():
            if a in runs and b in runs:
                folder = out / kind / f"pair{pair:03d}"
                name = f"connect {kind} pair {pair}"
                jobs.append(_connect_job(runs[a], runs[b], folder, flags, name))
    gap_flags = ("--split", "test", "--samples", GAP_SAMPLES.get(scale.name, 5000), "--quiet")
    groups = {"paired": list(runs.values())}
    population = root / "population"
    groups["population"] = [
        p for p in sorted(population.rglob("last.pt")) if met_criterion(p.parent)
    ]
    for group, paths in groups.items():
        if paths:
            folder = out / "spike_gap" / group
            line = command_line(
                "analysis/spike_gap.py", *paths, "--out", folder, "--overwrite", *gap_flags
            )
            jobs.append(Job(f"spike gap {group}", (line,), (folder / "spike_gap.csv",)))
    return jobs


def _collect(root: Path, name: str) -> pd.DataFrame:
    """Every ``connect.py`` output ``name`` under ``root/connectivity``, with ``kind`` and
    ``pair``."""
    parts = []
    for kind in KINDS:
        for path in sorted((root / "connectivity" / kind).glob(f"pair*/{name}")):
            part = pd.read_csv(path)
            part.insert(0, "pair", int(path.parent.name[4:]))
            part.insert(0, "kind", kind)
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def collect_barriers(root: Path) -> pd.DataFrame:
    """Every pair's ``connect_barriers.csv``, with ``kind`` and ``pair``."""
    return _collect(root, "connect_barriers.csv")


def collect_profiles(root: Path) -> pd.DataFrame:
    """Every pair's ``connect_profile.csv``, with ``kind`` and ``pair``."""
    return _collect(root, "connect_profile.csv")


def profile_means(profiles: pd.DataFrame, metric: str = "error") -> pd.DataFrame:
    """``metric`` along every path with hard spikes, mean over pairs with its 95 % t-interval:
    one row per kind x aligned x path x bn x t (the study's connectivity figure)."""
    keys = ["kind", "aligned", "path", "bn", "t"]
    rows = []
    for key, part in profiles[profiles.spikes == "hard"].groupby(keys, sort=False):
        low, high = t_interval(part[metric].tolist(), 0.95)
        row = {"n": len(part), "mean": part[metric].mean(), "ci_low": low, "ci_high": high}
        rows.append({**dict(zip(keys, key)), **row})
    return pd.DataFrame(rows)


def barrier_table(barriers: pd.DataFrame) -> pd.DataFrame:
    """Mean barrier with its 95 % t-interval over pairs, per kind x path x aligned x bn x spikes
    x metric."""
    if barriers.empty:
        return pd.DataFrame()
    keys = ["kind", "path", "aligned", "bn", "spikes", "metric"]
    rows = []
    for key, part in barriers.groupby(keys, sort=False):
        values = part.barrier.dropna().tolist()
        low, high = t_interval(values, 0.95)
        mean = float(np.mean(values)) if values else math.nan
        rows.append(
            {**dict(zip(keys, key)), "n": len(values), "mean": mean, "ci_low": low, "ci_high": high}
        )
    return pd.DataFrame(rows)


def connected_table(barriers: pd.DataFrame) -> pd.DataFrame:
    """The 'connected' decision of every kind x path x aligned (BN recomputed, hard spikes,
    error barrier) by the paired rule against :data:`CONNECTED_MARGIN`; the primary row is
    :data:`CONNECTED_ENDPOINT`."""
    if barriers.empty:
        return pd.DataFrame()
    chosen = barriers[
        (barriers.bn == "recomputed") & (barriers.spikes == "hard") & (barriers.metric == "error")
    ]
    rows = []
    for (kind, path, aligned), part in chosen.groupby(["kind", "path", "aligned"], sort=False):
        values = dict(zip(part.pair, part.barrier))
        verdict = compare_paired(
            f"{kind} minima connected on the {path}",
            "error barrier",
            dict.fromkeys(values, 0.0),
            values,
            "higher",
            CONNECTED_MARGIN.value,
        )
        if verdict.within_margin:
            decision = "connected"
        elif verdict.verdict == "holds":
            decision = "barrier"
        else:
            decision = "inconclusive"
        primary = (kind, path, bool(aligned)) == tuple(
            CONNECTED_ENDPOINT[k] for k in ("kind", "path", "aligned")
        )
        rows.append(
            {
                "kind": kind,
                "path": path,
                "aligned": bool(aligned),
                "family": "primary" if primary else "secondary",
                "n": verdict.n,
                "mean": verdict.mean,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "tost_high": verdict.tost_high,
                "p_value": verdict.p_value,
                "delta": verdict.delta,
                "decision": decision,
            }
        )
    return pd.DataFrame(rows)


def _read_gaps(folder: Path) -> pd.DataFrame:
    path = folder / "spike_gap.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def gap_values(root: Path, group: str) -> pd.DataFrame:
    """The spike gap of a group's runs as study metric values (``metric_values``' columns): the
    value ``|gap_acc|``, the binomial standard error of the difference of two accuracies on the
    same samples as an upper bound."""
    gaps = _read_gaps(root / "connectivity" / "spike_gap" / group)
    if gaps.empty:
        return pd.DataFrame()
    rows = []
    for _, row in gaps.iterrows():
        run = run_folder_of(row.checkpoint, root)
        config = json.loads((root / run / "config.json").read_text())
        p, n = row.acc_hard, row.num_samples
        rows.append(
            {
                "group": BENCHMARK if group == "paired" else group,
                "run": run,
                "method": config["method"],
                "pair": int(config["seed"]),
                "metric": GAP_METRIC,
                "value": abs(row.gap_acc),
                "stderr": math.sqrt(2 * p * (1 - p) / n),
                "converged": True,
            }
        )
    return pd.DataFrame(rows)


def gap_table(root: Path) -> pd.DataFrame:
    """TET against SDT on the paired gap by the study's paired rule (claim: TET lower; margin
    :data:`GAP_MARGIN`); one row."""
    values = gap_values(root, "paired")
    if values.empty:
        return pd.DataFrame()
    differences = paired_differences(values)
    if differences.empty:
        return pd.DataFrame()
    verdict = compare_paired(
        "TET lower surrogate-to-spike gap",
        GAP_METRIC,
        dict(zip(differences.pair, differences.sdt)),
        dict(zip(differences.pair, differences.tet)),
        "lower",
        GAP_MARGIN.value,
    )
    row = {
        "metric": GAP_METRIC,
        "claim": "TET lower",
        "n": verdict.n,
        "sdt_mean": float(differences.sdt.mean()),
        "tet_mean": float(differences.tet.mean()),
        "mean_difference": verdict.mean,
        "ci_low": verdict.ci_low,
        "ci_high": verdict.ci_high,
        "p_value": verdict.p_value,
        "delta": verdict.delta,
        "verdict": verdict.verdict,
        "within_margin": verdict.within_margin,
        "noise": float(np.sqrt(np.mean(differences.stderr**2))),
    }
    return pd.DataFrame([row])


def gap_correlations(root: Path) -> pd.DataFrame:
    """Kendall's tau and psi of the gap with every flatness metric over the population runs that
    met the criterion: :func:`~analysis.evidence.study_tables.population_table` with the spike
    gap in place of the generalization gap (permutation p-values, groups per axis)."""
    gaps = gap_values(root, "population")
    runs = collect_runs(root, ["population"])
    if gaps.empty or runs.empty:
        return pd.DataFrame()
    values = metric_values(runs)
    values = pd.concat([values, gaps[values.columns]], ignore_index=True)
    return population_table(values, runs, gap=GAP_METRIC)


def _number(value) -> str:
    return "nan" if value != value else f"{value:.3g}"


def connectivity_markdown(root: Path, figures: Path) -> str:
    """The connectivity section of STUDY.md; writes its tables into ``figures``
    (``study_barriers.csv``, ``study_connected.csv``, ``study_spike_gap.csv``,
    ``study_gap_tau.csv``). Empty when the stage has not run."""
    barriers = collect_barriers(root)
    gaps, taus = gap_table(root), gap_correlations(root)
    if barriers.empty and gaps.empty:
        return ""
    summary, connected = barrier_table(barriers), connected_table(barriers)
    for name, table in (
        ("study_barriers.csv", summary),
        ("study_connected.csv", connected),
        ("study_spike_gap.csv", gaps),
        ("study_gap_tau.csv", taus),
    ):
        if not table.empty:
            table.to_csv(figures / name, index=False, na_rep="nan")
    lines = [
        "",
        "## Mode connectivity of MNIST-1D minima (issue 20)",
        "",
        "Barriers (Frankle et al. 2020: max over t of the value minus the straight line between "
        "the end values) between SDT_i and TET_i, and between consecutive seeds of one method, "
        "on the straight line and on curves fitted to the surrogate model's L_SDT (Garipov et "
        "al. 2018), with B's units aligned to A's by weight matching or not; BatchNorm "
        "statistics recomputed at every point, hard spikes. Mean over pairs [95 % t-interval].",
        "",
        f"'Connected' (margin fixed before any run): error barrier of the aligned Bezier curve "
        f"within {CONNECTED_MARGIN.value:g} ({CONNECTED_MARGIN.reason}), decided by the paired "
        "rule's equivalence; the SDT↔TET row is the primary one.",
        "",
    ]
    if not connected.empty:
        for _, r in connected[connected.family == "primary"].iterrows():
            lines += [
                f"Primary decision: **{r.decision}**: the error barrier between SDT_i and TET_i "
                f"along the aligned Bezier curve is {_number(r['mean'])} "
                f"[{_number(r.ci_low)}, {_number(r.ci_high)}] over {r.n} pairs.",
                "",
            ]
        profiles = collect_profiles(root)
        if not profiles.empty:
            data = profile_means(profiles)
            save_figure(study_profiles_figure(data), figures / "study_connectivity")
            save_table(data, figures / "study_connectivity.csv", na_rep="nan")
            lines += ["![error along the paths](study_connectivity.png)", ""]
        view = summary[(summary.bn == "recomputed") & (summary.spikes == "hard")]
        loss = view[view.metric == "l_sdt"].set_index(["kind", "path", "aligned"])
        lines += [
            "| pairs | path | aligned | n | error barrier | L_SDT barrier | decision |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in connected.iterrows():
            key = (r.kind, r.path, r.aligned)
            l_sdt = loss.loc[key] if key in loss.index else None
            l_text = (
                f"{_number(l_sdt['mean'])} [{_number(l_sdt.ci_low)}, {_number(l_sdt.ci_high)}]"
                if l_sdt is not None
                else "n/a"
            )
            mark = " (primary)" if r.family == "primary" else ""
            lines.append(
                f"| {r.kind.replace('_', '↔')} | {r.path} | {'yes' if r.aligned else 'no'} | "
                f"{r.n} | {_number(r['mean'])} [{_number(r.ci_low)}, {_number(r.ci_high)}] | "
                f"{l_text} | {r.decision}{mark} |"
            )
        lines.append("")
    if not gaps.empty:
        r = gaps.iloc[0]
        lines += [
            "Surrogate-to-spike gap |acc(smooth σ forward) − acc(hard spikes)| on the test split "
            f"(claim: TET lower): SDT {_number(r.sdt_mean)}, TET {_number(r.tet_mean)}, "
            f"difference {_number(r.mean_difference)} [{_number(r.ci_low)}, {_number(r.ci_high)}]"
            f", p {_number(r.p_value)}, δ {_number(r.delta)} ({GAP_MARGIN.reason}): "
            f"**{r.verdict}** (n = {r.n}).",
            "",
        ]
    if not taus.empty:
        lines += ["Kendall's tau of the gap with each flatness measure over the population:", ""]
        lines += [
            "| measure | runs | tau | p (permutation) | psi | p |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in taus.iterrows():
            lines.append(
                f"| {r.metric} | {r.num_runs} | {_number(r.tau)} | {_number(r.p_tau)} | "
                f"{_number(r.psi)} | {_number(r.p_psi)} |"
            )
        lines.append("")
    return "\n".join(lines)
