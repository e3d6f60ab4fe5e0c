"""Figures of Hessian results (records and arrays in, matplotlib figures out)."""

from __future__ import annotations

from pathlib import Path

from toolkit.io import atomic_write

__all__ = ["density_figure", "save_density_figure"]


def density_figure(records: list[dict], arrays: list[dict]):
    """Semilog SLQ densities of all checkpoints in one figure (Ghorbani et al. 2019 style)."""
    import matplotlib  # here, not at the top: the Hessian command imports matplotlib only if needed

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for record, entry in zip(records, arrays):
        label = f"{record['name']} ({str(record['method']).upper()})"
        axes.semilogy(entry["grid"].numpy(), entry["density"].clamp_min(1e-12).numpy(), label=label)
    axes.set(
        xlabel="eigenvalue",
        ylabel="density",
        ylim=(1e-6, None),
        title=f"{records[0]['curvature']} spectral density (SLQ)",
    )
    axes.legend()
    figure.tight_layout()
    return figure


def save_density_figure(records: list[dict], arrays: list[dict], out: Path) -> Path:
    """Draw :func:`density_figure` into ``out/density.png`` (atomically); returns the path."""
    from matplotlib import pyplot as plt

    figure = density_figure(records, arrays)
    path = atomic_write(
        out / "density.png", lambda file: figure.savefig(file, format="png", dpi=120)
    )
    plt.close(figure)
    return path
