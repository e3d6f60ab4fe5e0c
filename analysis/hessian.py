"""Hessian spectrum of trained SNN checkpoints: top/bottom eigenvalues, trace, spectral density.

For each checkpoint, the loss (the checkpoint's SDT or TET loss, or L_t = CE(O[t], y) of one time
step) is evaluated in eval mode on a fixed, seeded subset of the data, weighted exactly per sample.
The default curvature is the autograd "surrogate Hessian" (double backward through the surrogate
gradient; symmetric), analysed by Lanczos with residual control, Hutch++ and stochastic Lanczos
quadrature. --operator sg-jacobian instead takes the Jacobian of the surrogate-gradient field by
finite differences; it is not symmetric, so only its trace and asymmetry are reported.

Writes hessian.json (values, error bars, residuals, provenance), hessian.csv (long format, with
the analysed loss in its last column) and, with --density, hessian.npz and density.png into
<first checkpoint's run folder>/analysis/ unless --out says otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.hessian import COLUMNS, HESSIAN, SpectrumSettings, all_converged
from analysis.plots.hessian import save_density_figure
from toolkit.io import save_npz


def outputs(settings: SpectrumSettings) -> list[str]:
    """The files written: JSON and CSV, plus the densities' arrays and figure."""
    density = ["hessian.npz", "density.png"] if settings.density else []
    return ["hessian.json", "hessian.csv", *density]


def loss_label(name: str) -> str:
    """``tet(lambda=0.05, phi=1.0)`` -> ``TET``; ``sdt`` -> ``SDT``; ``ce_t0`` -> ``CE_T0``."""
    return name.split("(")[0].upper()


def print_table(records: list[dict]) -> None:
    """One row per checkpoint on stdout."""
    print(
        f"{'checkpoint':<36} {'loss':<6} {'lambda_max':>11} {'next top-k':<30} "
        f"{'lambda_min':>11} {'trace +- stderr':>22} {'HVPs':>6} {'seconds':>8}"
    )
    for record in records:
        top = record.get("top", {}).get("eigenvalues", [])
        bottom = record.get("bottom", {}).get("eigenvalues", [])
        trace = record.get("trace")
        trace_text = f"{trace['mean']:.4g} +- {trace['stderr']:.2g}" if trace else "-"
        others = ", ".join(f"{value:.4g}" for value in top[1:])[:30]
        print(
            f"{record['name'][:36]:<36} {loss_label(record['loss']):<6} "
            f"{(f'{top[0]:.5g}' if top else '-'):>11} {others:<30} "
            f"{(f'{bottom[0]:.5g}' if bottom else '-'):>11} {trace_text:>22} "
            f"{record['num_matvecs']:>6} {record['seconds']:>8.1f}"
        )
        if "asymmetry" in record:
            print(f"  ||J - J^T||_F / ||J||_F = {record['asymmetry']['relative']:.3g}")


def run(task: Task) -> int:
    """Every checkpoint's spectrum; the JSON, CSV (and densities); the table on stdout."""
    settings = task.settings
    results = [
        HESSIAN.compute(task.input(checkpoint), settings, task.evaluation)
        for checkpoint in task.checkpoints
    ]
    records = [result.record for result in results]
    paths = [
        task.write_json("hessian.json", "hessian_spectrum", results=records),
        task.write_csv("hessian.csv", COLUMNS, [row for r in results for row in r.rows]),
    ]
    if settings.density:
        arrays = {f"{i}/{k}": v for i, r in enumerate(results) for k, v in r.arrays.items()}
        paths.append(save_npz(task.out / "hessian.npz", arrays))
        paths.append(save_density_figure(records, [r.arrays for r in results], task.out))
    print_table(records)
    print(f"wrote {', '.join(str(path) for path in paths)}")
    if settings.strict and not all_converged(records):
        print("error: some eigenvalues did not converge (--strict)", file=sys.stderr)
        return 1
    return 0


COMMAND = CheckpointCommand(
    name="hessian",
    doc=__doc__,
    example="  python analysis/hessian.py runs/<run>/last.pt --loss tet --top-k 5 --density\n",
    run=run,
    settings=SpectrumSettings,
    outputs=outputs,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()
