"""The connection between two checkpoints: settings, the resumable computation, the tables.

For checkpoints A and B of one architecture: optionally B aligned to A by weight matching; for
B and (with ``align``) aligned B, the straight line and every fitted curve (the bend trained on
A's training data for ``curve_loss``, resumable per epoch); along each path ``num_points``
evaluations of both losses, accuracy and firing rate on A's fixed evaluation subset, with
BatchNorm statistics interpolated and recomputed, hard and smooth spikes; and the barrier of
every profile (:func:`analysis.connectivity.profile.barrier`). Finished fits and profiles are
kept in ``<out>/connect_parts/`` until the results are written, so a killed run resumes.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from analysis.connectivity.alignment import permute, spec_of, weight_matching
from analysis.connectivity.curves import CURVES, CurveStep, fit_curve
from analysis.connectivity.profile import (
    METRICS,
    PROFILE_COLUMNS,
    PathEvaluator,
    barrier,
    split_state,
)
from analysis.measures.inputs import (
    Datasets,
    DataSpec,
    EvalInput,
    Evaluation,
    loss_function,
    sample_indices,
    select,
)
from toolkit.errors import ConfigError
from toolkit.io import atomic_write, load_json, save_json, write_csv
from toolkit.settings import check, option
from training.data.datasets import TensorLoader
from training.runs.checkpoint import Checkpoint

__all__ = [
    "ConnectSettings",
    "BARRIER_COLUMNS",
    "PARTS",
    "check_pair",
    "connect",
    "barrier_rows",
]

PARTS = "connect_parts"
BARRIER_COLUMNS = (
    "aligned",
    "path",
    "bn",
    "spikes",
    "metric",
    "barrier",
    "t_max",
    "start",
    "end",
    "peak",
)


@dataclass(frozen=True)
class ConnectSettings:
    """What ``analysis/connect.py`` computes between two checkpoints."""

    curves: tuple[str, ...] = option(
        CURVES, "curves fitted besides the straight line", choices=CURVES, empty=True
    )
    align: bool = option(True, "also align B's units to A's by weight matching and report both")
    num_points: int = option(11, "evaluated points per path, t evenly spaced in [0, 1]", minimum=3)
    curve_loss: str = option(
        "sdt", "loss a curve is fitted to (tet: at A's lambda and phi)", choices=("sdt", "tet")
    )
    epochs: int | None = option(
        None, "epochs of a curve fit (None: A's training epochs)", minimum=1
    )
    lr: float | None = option(None, "initial learning rate of a fit (None: A's)", above=0.0)
    curve_batch_size: int | None = option(
        None, "samples per step of a fit (None: A's batch size)", minimum=1
    )
    curve_samples: int | None = option(
        None, "training samples of a fit (None: A's whole training split)", minimum=1
    )
    bn_samples: int = option(
        1024, "training samples the BatchNorm statistics are recomputed on", minimum=1
    )
    plots: bool = option(True, "draw connect.png and connect.pdf")

    def __post_init__(self) -> None:
        check(self)

    def dry_run(self) -> ConnectSettings:
        """One epoch on 64 samples, three points per path."""
        return replace(self, epochs=1, num_points=3, curve_samples=64, bn_samples=32)


def check_pair(a: Checkpoint, b: Checkpoint) -> None:
    """Refuse two checkpoints that cannot be joined.

    Raises:
        ConfigError: The same file twice, another architecture, or another dataset.
    """
    if a.sha256 == b.sha256:
        raise ConfigError(
            f"{a.path} and {b.path} are the same checkpoint (sha256 {a.sha256[:12]}): "
            "a path from a minimum to itself has no barrier"
        )
    model_a, model_b = a.raw["model"], b.raw["model"]
    if (model_a["name"], model_a["kwargs"]) != (model_b["name"], model_b["kwargs"]):
        raise ConfigError(
            f"{a.path} is {model_a['name']} {model_a['kwargs']} but {b.path} is "
            f"{model_b['name']} {model_b['kwargs']}: paths need one architecture"
        )
    keys = ("dataset", "encoding", "T", "upsample")
    differing = [k for k in keys if getattr(a.config, k, None) != getattr(b.config, k, None)]
    if differing:
        raise ConfigError(f"{a.path} and {b.path} differ in {differing[0]}: paths need one input")


def _check_parts(parts: Path, settings, evaluation, data_spec, shas: tuple[str, str]) -> None:
    """Start ``parts`` with a record of what it computes, or check that an existing one (a
    killed run's) computes the same.

    Raises:
        ConfigError: If the parts were made with other inputs or settings.
    """
    record = {
        "settings": asdict(settings),
        "data": asdict(data_spec),
        "dtype": str(evaluation.dtype),
        "device": str(evaluation.device),
        "seed": evaluation.seed,
        "inputs": list(shas),
    }
    path = parts / "parts.json"
    if path.exists():
        if load_json(path) != json.loads(json.dumps(record)):
            raise ConfigError(
                f"{parts} holds a killed run with other inputs or settings; rerun it with the "
                "same flags, or pass --overwrite"
            )
        return
    parts.mkdir(parents=True, exist_ok=True)
    save_json(path, record)


def _save_torch(path: Path, payload: dict) -> None:
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _fit_path(parts: Path, tag: str, kind: str) -> Path:
    return parts / f"fit_{tag}_{kind}.pt"


def _resume_fit(path: Path) -> tuple[CurveStep | None, list]:
    if not path.exists():
        return None, []
    stored = torch.load(path, weights_only=True)
    step = CurveStep(
        stored["epoch"], stored["history"][-1], stored["middle"], stored["optimizer"], 0.0
    )
    return step, stored["history"]


def _fit(kind, tag, model, ends, loader, loss, options, parts, quiet) -> tuple[dict, dict]:
    """A curve's bend, resumed from and saved to ``parts`` after every epoch; its record."""
    path = _fit_path(parts, tag, kind)
    resume, history = _resume_fit(path)
    start = time.perf_counter()
    done = resume.epoch if resume else 0
    middle = resume.middle if resume else None
    steps = fit_curve(kind, model, ends[0], ends[1], loader, loss, resume=resume, **options)
    label = f"fit {kind} ({tag})"
    for step in tqdm(steps, desc=label, initial=done, total=options["epochs"], disable=quiet):
        history.append(step.loss)
        middle = step.middle
        payload = {"epoch": step.epoch, "history": history, "middle": middle}
        _save_torch(path, {**payload, "optimizer": step.optimizer})
    record = {
        "kind": kind,
        "epochs": options["epochs"],
        "epochs_resumed": done,
        "loss_history": history,
        "seconds": time.perf_counter() - start,
    }
    return middle, record


def _read_part(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            row[key] = value == "True" if key == "aligned" else _number(value)
    return rows


def _number(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _states(checkpoint: Checkpoint, dtype, device) -> tuple[dict, dict]:
    return split_state(checkpoint.model(device).to(dtype))


def connect(
    a: EvalInput,
    b: Checkpoint,
    settings: ConnectSettings,
    evaluation: Evaluation,
    datasets: Datasets,
    parts: Path,
    data_spec: DataSpec,
) -> dict:
    """Every path between ``a`` and ``b`` (and aligned ``b``): profiles, barriers, records.

    Args:
        a: Checkpoint A with its fixed evaluation samples.
        b: Checkpoint B (checked by :func:`check_pair`).
        settings: What to compute.
        evaluation: dtype, device, seed (of the fits, the BatchNorm subset and the alignment)
            and quietness.
        datasets: The command's loaded datasets.
        parts: Folder of the resumable pieces.
        data_spec: The evaluation samples' spec (its batch size is the BatchNorm subset's too).

    Returns:
        ``{"profile": rows, "barriers": rows, "fits": [...], "alignment": {...} | None,
        "curve_config": {...}, "seconds": {...}}``.
    """
    config, dtype, device, seed = a.config, evaluation.dtype, evaluation.device, evaluation.seed
    _check_parts(parts, settings, evaluation, data_spec, (a.checkpoint.sha256, b.sha256))
    model = copy.deepcopy(a.model).to(device=device, dtype=dtype)
    ends_a = _states(a.checkpoint, dtype, device)
    ends_b = _states(b, dtype, device)
    variants = {"plain": ends_b}
    alignment = None
    if settings.align:
        start = time.perf_counter()
        spec = spec_of(model, a.checkpoint.raw["model"]["name"])
        state_a = {**ends_a[0], **ends_a[1]}
        state_b = {**ends_b[0], **ends_b[1]}
        found = weight_matching(spec, state_a, state_b, seed=seed)
        aligned = permute(spec, found.perms, state_b)
        variants["aligned"] = (
            {k: aligned[k] for k in ends_b[0]},
            {k: aligned[k] for k in ends_b[1]},
        )
        alignment = {
            "method": "weight matching (Ainsworth et al. 2023, Alg. 1)",
            "num_units": spec.sizes,
            "num_sweeps": found.num_sweeps,
            "converged": found.converged,
            "objective": found.objective,
            "identity_objective": found.identity_objective,
            "units_moved": {
                p: int((perm != torch.arange(len(perm))).sum()) for p, perm in found.perms.items()
            },
            "seed": seed,
            "seconds": time.perf_counter() - start,
        }
    # The fits' data: A's training split (a seeded subset if asked), shuffled by the seed.
    dataset = datasets.of(config)
    x, y = dataset.x_train, dataset.y_train
    if settings.curve_samples is not None:
        index = sample_indices(len(y), settings.curve_samples, seed)
        x, y = x[index], y[index]
    batch_size = settings.curve_batch_size or config.batch_size
    loader = TensorLoader(x.to(device, dtype), y.to(device), batch_size, shuffle=True, seed=seed)
    loss, loss_name = loss_function(config, settings.curve_loss)
    options = {
        "epochs": settings.epochs or config.epochs,
        "lr": settings.lr or config.lr,
        "optimizer": config.optimizer,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "seed": seed,
    }
    curve_config = {
        **options,
        "loss": loss_name,
        "batch_size": batch_size,
        "num_samples": len(y),
        "data": "A's training split" + (" (seeded subset)" if settings.curve_samples else ""),
        "augmentation": False,
        "t_distribution": "uniform on [0, 1], one t per step",
        "bn_during_fit": "train mode (batch statistics)",
        "schedule": "cosine to 0 over the epochs, per epoch",
    }
    bn_spec = DataSpec("train", settings.bn_samples, seed, data_spec.batch_size)
    bn_batches, bn_record = select(datasets, config, bn_spec)
    bn_batches = [(bx.to(device, dtype), by.to(device)) for bx, by in bn_batches]
    eval_x, eval_y = a.loader.x.to(device, dtype), a.loader.y.to(device)
    eval_loader = TensorLoader(eval_x, eval_y, data_spec.batch_size)
    evaluator = PathEvaluator(model, eval_loader, bn_batches, config.tet_lambda, config.tet_phi)
    ts = np.linspace(0.0, 1.0, settings.num_points).tolist()
    profile, fits, seconds = [], [], {}
    for tag, ends in variants.items():
        for path in ("line", *settings.curves):
            middle = None
            if path != "line":
                begun = time.perf_counter()
                bend, record = _fit(
                    path,
                    tag,
                    model,
                    (ends_a[0], ends[0]),
                    loader,
                    loss,
                    options,
                    parts,
                    evaluation.quiet,
                )
                fits.append({"aligned": tag == "aligned", **record})
                seconds[f"fit_{tag}_{path}"] = time.perf_counter() - begun
                mid_buffers = {
                    k: (v + ends[1][k]) / 2 if v.is_floating_point() else v
                    for k, v in ends_a[1].items()
                }
                middle = (bend, mid_buffers)
            part = parts / f"profile_{tag}_{path}.csv"
            if part.exists():
                profile += _read_part(part)
                continue
            begun = time.perf_counter()
            rows = []
            points = tqdm(ts, desc=f"profile {path} ({tag})", disable=evaluation.quiet)
            for t in points:
                for row in evaluator.profile(path, [t], (ends_a, ends), middle):
                    rows.append({"aligned": tag == "aligned", "path": path, **row})
            write_csv(part, PROFILE_COLUMNS, [[r[c] for c in PROFILE_COLUMNS] for r in rows])
            seconds[f"profile_{tag}_{path}"] = time.perf_counter() - begun
            profile += rows
    return {
        "profile": profile,
        "barriers": barrier_rows(profile),
        "fits": fits,
        "alignment": alignment,
        "curve_config": curve_config,
        "data": a.data,
        "bn_data": bn_record,
        "t": ts,
        "seconds": seconds,
    }


def barrier_rows(profile: list[dict]) -> list[dict]:
    """One row of :data:`BARRIER_COLUMNS` per aligned x path x bn x spikes x metric."""
    groups: dict[tuple, list[dict]] = {}
    for row in profile:
        key = (row["aligned"], row["path"], row["bn"], row["spikes"])
        groups.setdefault(key, []).append(row)
    rows = []
    for (aligned, path, bn, spikes), members in groups.items():
        members = sorted(members, key=lambda r: r["t"])
        for metric in METRICS:
            found = barrier([r["t"] for r in members], [r[metric] for r in members])
            rows.append(
                {
                    "aligned": aligned,
                    "path": path,
                    "bn": bn,
                    "spikes": spikes,
                    "metric": metric,
                    "barrier": found.height,
                    "t_max": found.t,
                    "start": found.start,
                    "end": found.end,
                    "peak": found.peak,
                }
            )
    return rows
