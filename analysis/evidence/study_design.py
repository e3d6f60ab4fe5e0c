"""The design of the evidence study: benchmarks, pairs, data, endpoints, margins, the population
and the flatness protocols, and the jobs that make them.

Version 2 (issue 18), committed before the first full run of this version; issue 12's version
1 (one draw, one test set, 10 seeds, no multiplicity correction) stays in
``figures/study_one_draw.csv`` as the comparison row. Everything a verdict depends on is fixed
here, in code, before any result of this version was looked at:

**Benchmarks and pairs.** Pair ``s`` trains SDT and TET with the same seed (initial weights and
data order) *and on its own data*, so the intervals cover seeds and data:

- ``digits``: the training defaults; pair ``s`` uses its own stratified train/test split
  (``--digits-split-seed s``, 450 test images); 12 pairs.
- ``mnist1d`` (primary): ``configs/mnist1d.json``; pair ``s`` trains on its own generated draw
  (``--mnist1d-seed 1000 + s``, 4,000 samples) and every run is scored on one common test set of
  :data:`TEST_SAMPLES` samples generated with a seed used for nothing else
  (``training.data.mnist1d.TEST_SEED``) and never used to choose a setting; 20 pairs.
- ``mnist1d_sequence`` (temporal input): ``configs/mnist1d_sequence.json``, chosen by the protocol
  in ``configs/README.md``; pairs as ``mnist1d``; 12 pairs.

**Paper scale** (issue 19; scale ``paper``, ``--benchmark NAME``, docs/cluster.md): the same
paired design, endpoints, rules and margins on the paper's benchmarks, each a
:class:`Benchmark` of the registry with its preset, pairs, flatness flags and resources per job:
ResNet-19 on CIFAR-10 and CIFAR-100 (T 4) and VGGSNN on CIFAR10-DVS, 10 pairs of 300 epochs each
(:data:`PAPER_BENCHMARKS`: 10 is the fewest pairs at which the exact sign-flip test reaches
p = 0.002; 300 epochs is the paper's schedule); SEW- and Spiking-ResNet-34 on ImageNet, 6 pairs of
120 epochs on 8 GPUs each (priced, not yet runnable: :attr:`Benchmark.missing`). Every pair trains
on the dataset's fixed split, so these intervals cover seeds, not data. The small benchmarks'
numbers above are unchanged by it.

**Primary endpoints** (:data:`PRIMARY_ENDPOINTS`), per benchmark, each its own claim of the paper
and decided by its own sign-flip p-value at 5 %:

- ``test_acc`` (TET higher): the paper's headline claim, on the large common test set;
- ``acc_gap`` (TET lower): train accuracy (eval mode) minus test accuracy, the generalization gap
  the flatness argument is about;
- ``normalized_lambda_max/l_sdt`` (TET lower), the flatness measure, because it is (1) curvature,
  not an ascent: it contains no first-order term at a point that is not a minimum of the loss (a
  TET checkpoint under L_SDT), where every worst-case sharpness does; (2) of L_SDT, the
  cross-entropy of the time-averaged output, i.e. the loss of the classifier both methods deploy,
  the same function for SDT and TET runs (L_TET depends on λ and is the training loss of only one
  of them); (3) in the rescaling-invariant units ``diag|w| H diag|w|`` (Kwon et al. 2021), so that
  the BatchNorm rescalings that leave the network unchanged (Dinh et al. 2017) do not change it;
  (4) the paper's Hessian evidence is the top eigenvalue; and (5) its estimator, Lanczos, reports
  convergence, so a table can show that it is not noise.

**Secondary metrics**: every other metric with a claim (``loss_gap``, every flatness measure of
L_SDT and L_TET, every radius of the adaptive worst case, and the linear-removed variant
``<measure>-linear = value - first-order term`` of every ascent). Their p-values are adjusted
together per benchmark by Westfall & Young's step-down min-P over the joint sign-flip
distribution (:data:`MULTIPLICITY_METHOD`); their verdicts use the adjusted p, and their
equivalence (TOST) a Bonferroni interval over the family. ``train_acc`` is reported without a
claim: it is the caveat of a smaller gap.

**Estimator noise**: a metric is flagged when the root-mean-square standard error of a paired
difference from its estimator (or, for accuracies, from the test set) exceeds
:data:`NOISE_SHARE` of the standard deviation of the paired differences, i.e. when measurement
noise is more than a quarter of their variance.

**Flatness**: the paired runs get the protocol's defaults (``FlatnessSettings``: 1,024 samples
for curvature, 512 for the ascents, APGD with 3 starts and 20 steps at three radii, XTrace),
with the data subset and every probe seeded by the pair (``--data-seed s --probe-seed s``): SDT
and TET of a pair share probes (common random numbers), pairs do not. The subset-to-subset spread
is measured on :data:`SUBSET_PAIRS` of ``mnist1d`` with the disjoint subsets
:data:`SUBSET_CHUNKS`. The population uses cheaper settings (:data:`POPULATION_FLATNESS`).

**Population** (:class:`PopulationDesign`), MNIST-1D static: 3 losses (SDT, TET λ 0.05, TET
λ 1e-3) x 3 learning rates x 3 batch sizes x 4 seeds = 108 runs; run ``k`` of a cell trains on
draw ``2000 + k``. Every run trains until its train-split L_SDT (eval mode) reaches the threshold
the pilot of ``configs/README.md`` fixed, with a 30-epoch cap; runs that do not reach it are
reported and left out. L_TET is measured at each run's own λ and at the fixed λ 0.05 for every run
(``tet@0.05``). Kendall's tau, the granulated psi and their permutation nulls, with group counts
per axis; the runs share seeds, draws and a grid, so a p-value is read as a scale.

**Margins** (:data:`MARGINS`) are issue 12's, unchanged.

Jobs are commands (``training/run.py``, ``analysis/flatness.py``) run as subprocesses with one
thread each, at most ``StudyScale.jobs`` at a time; each is skipped when its outputs exist, so
the study resumes. Stages (:data:`STAGES`) can be run separately.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis.pipeline.jobs import REPO, Job, Resources, command_line

__all__ = [
    "DESIGN_VERSION",
    "DESIGN_COMMITTED",
    "BENCHMARKS",
    "PRIMARY_BENCHMARK",
    "SMALL_BENCHMARKS",
    "PAPER_BENCHMARKS",
    "Benchmark",
    "gpu_hours",
    "PRIMARY_ENDPOINTS",
    "CLAIMS",
    "DESCRIPTIVE",
    "MULTIPLICITY_METHOD",
    "NOISE_SHARE",
    "TEST_SAMPLES",
    "SUBSET_PAIRS",
    "SUBSET_CHUNKS",
    "POPULATION_FLATNESS",
    "FIXED_TET_LAMBDA",
    "PopulationDesign",
    "StudyScale",
    "SCALES",
    "STAGES",
    "Margin",
    "MARGINS",
    "margin_for",
    "claim_of",
    "paired_jobs",
    "population_cells",
    "population_jobs",
    "flatness_jobs",
    "met_criterion",
    "population_flatness_jobs",
    "subset_jobs",
]

DESIGN_VERSION = 2
DESIGN_COMMITTED = "2026-12-06"
"""The day this version of the design was committed, before its first full run."""

CONFIGS = REPO / "configs"
TEST_SAMPLES = 20_000
"""Samples of MNIST-1D's common test set (generated with its own seed)."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the paired design: what trains, how many pairs, how its flatness is
    measured and what one job needs on a cluster.

    Attributes:
        name: Folder, label and ``--benchmark`` key.
        config: Committed training config (None: the training defaults or ``preset``).
        pairs: Paired seeds at full scale.
        description: One line for the report.
        stage: The study stage that runs it (``paired`` or ``temporal``).
        preset: ``training/run.py --preset`` it trains (its TET preset; SDT runs add
            ``--method sdt``, everything else the same), or None.
        data: How a pair's data is chosen: ``digits`` (its own stratified split), ``mnist1d`` (its
            own generated draw, the common test set) or ``fixed`` (the dataset's own train/test
            split for every pair: intervals cover seeds, not data).
        data_folder: Folder under the study's ``--data-root`` holding the dataset ("": the
            data root itself).
        train_flags: Extra ``training/run.py`` flags of every run.
        flatness: ``analysis/flatness.py`` flags of its paired runs (before the scale's own).
        training: Resources of one training job.
        measuring: Resources of one flatness job (one pair's two checkpoints).
        epochs: Training epochs at full scale (None: the config's or preset's).
        why: Why these pairs and epochs (paper benchmarks).
        seconds_per_epoch: Measured seconds of one training epoch on ``training``'s GPUs (None:
            unmeasured), for :func:`gpu_hours`.
        missing: What the toolkit lacks to run the study on it ("": nothing); ``--plan`` still
            prices it, a run is refused with this reason.
    """

    name: str
    config: Path | None
    pairs: int
    description: str
    stage: str = "paired"
    preset: str | None = None
    data: str = "mnist1d"
    data_folder: str = ""
    train_flags: tuple = ()
    flatness: tuple = ()
    training: Resources = Resources()
    measuring: Resources = Resources()
    epochs: int | None = None
    why: str = ""
    seconds_per_epoch: float | None = None
    missing: str = ""

    def data_args(self, pair: int, test_samples: int = TEST_SAMPLES) -> list[str]:
        """Training flags of pair ``pair``'s own data (MNIST-1D: and of the common test set)."""
        if self.data == "digits":
            return ["--digits-split-seed", str(pair)]
        if self.data == "fixed":
            return []
        return ["--mnist1d-seed", str(1000 + pair), "--mnist1d-test-samples", str(test_samples)]


_LARGE_FLATNESS = ("--batch-size", "64", "--dtype", "float32")
"""Flatness of a paper model: the protocol's samples and probes in float32 (its default, stated so
that a change of the default does not silently make a paper job float64), 64 samples per forward
pass (the double backward of T = 4 steps of a 32x32 ResNet-19 holds every step's activations; a
guess, unmeasured); the results do not depend on the batch size."""
_PAPER_TRAIN = ("--eval-train", "--test-every", "10")
"""The study's endpoints need the train split in eval mode after the last epoch (``acc_gap``),
which the paper presets leave out; the test split is scored every 10 epochs and after the last."""
_PAPER_WHY = (
    "10 pairs: the fewest at which the exact sign-flip test of a paired difference reaches "
    "p = 2/2^10 = 0.002, so that a benchmark's primary endpoints survive the 5 % level with room "
    "and the Westfall-Young family has more than a handful of sign patterns; 20 runs of {epochs} "
    "epochs, the paper's schedule (a shorter one changes the minima the claim is about)"
)


def _paper(name: str, preset: str, description: str, **fields) -> Benchmark:
    defaults = {
        "config": None,
        "pairs": 10,
        "preset": preset,
        "data": "fixed",
        "train_flags": _PAPER_TRAIN,
        "flatness": _LARGE_FLATNESS,
        "training": Resources(gpus=1, cpus=8, mem_gb=32, hours=24),
        "measuring": Resources(gpus=1, cpus=8, mem_gb=64, hours=12),
        "epochs": 300,
    }
    merged = {**defaults, **fields}
    merged.setdefault("why", _PAPER_WHY.format(epochs=merged["epochs"]))
    return Benchmark(name, description=description, **merged)


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "digits", None, 12, "sklearn digits, own stratified split per pair", data="digits"
        ),
        Benchmark(
            "mnist1d",
            CONFIGS / "mnist1d.json",
            20,
            "MNIST-1D static encoding, own draw per pair, common 20,000-sample test set",
        ),
        Benchmark(
            "mnist1d_sequence",
            CONFIGS / "mnist1d_sequence.json",
            12,
            "MNIST-1D sequence encoding (temporal input), own draw per pair, common test set",
            stage="temporal",
        ),
        _paper(
            "cifar10-resnet19",
            "cifar10-resnet19-T4-tet",
            "ResNet-19 on CIFAR-10 (T 4, the paper's preset), the fixed split: intervals cover "
            "seeds, not data",
            data_folder="cifar",
        ),
        _paper(
            "cifar100-resnet19",
            "cifar100-resnet19-T4-tet",
            "ResNet-19 on CIFAR-100 (T 4, the paper's preset), the fixed split: intervals cover "
            "seeds, not data",
            data_folder="cifar",
        ),
        _paper(
            "cifar10dvs-vggsnn",
            "dvs-vggsnn-tet",
            "VGGSNN on CIFAR10-DVS (48x48, 10 frames, the paper's preset), the fixed 9:1 split: "
            "intervals cover seeds, not data",
            data_folder="cifar10_dvs",
            flatness=("--batch-size", "32", "--dtype", "float32"),
        ),
        *(
            _paper(
                f"imagenet-{model.replace('_', '-')}",
                f"imagenet-{model}-T{T}-tet",
                f"{model} on ImageNet (T {T}, the paper's preset, 8 GPUs per run), the fixed "
                "split: intervals cover seeds, not data",
                pairs=6,
                epochs=120,
                data_folder="imagenet",
                flatness=("--batch-size", "16", "--dtype", "float32"),
                training=Resources(gpus=8, cpus=64, mem_gb=256, hours=48),
                measuring=Resources(gpus=1, cpus=16, mem_gb=128, hours=24),
                why="6 pairs: the fewest at which the exact sign-flip test can reach 5 % "
                "(p = 2/2^6 = 0.031), for the cost of 12 ImageNet runs of the paper's 120 epochs "
                "on 8 GPUs each; a verdict at this count needs every pair to agree in sign",
                missing="ImageNet is streamed from disk: training has no train-split evaluation "
                "(acc_gap) and the analyses, which take tensors, cannot load it "
                "(training.data.datasets.dataset_for)",
            )
            for model, T in (("sew_resnet34", 4), ("spiking_resnet34", 6))
        ),
    )
}
SMALL_BENCHMARKS = ("digits", "mnist1d", "mnist1d_sequence")
"""The benchmarks of ``make study`` (every committed scale but the paper ones)."""
PAPER_BENCHMARKS = ("cifar10-resnet19", "cifar100-resnet19", "cifar10dvs-vggsnn")
"""The paper-scale study (scale ``paper``): the paper's own CIFAR and CIFAR10-DVS benchmarks.
The ImageNet benchmarks run with ``--benchmark`` only."""
PRIMARY_BENCHMARK = "mnist1d"

PRIMARY_ENDPOINTS = ("test_acc", "acc_gap", "normalized_lambda_max/l_sdt")
CLAIMS = {"test_acc": "higher", "acc_gap": "lower", "loss_gap": "lower"}
"""Claimed direction of TET - SDT of the run metrics; every flatness metric: ``lower``."""
DESCRIPTIVE = ("train_acc",)
"""Paired metrics reported without a claim (the train-accuracy caveat)."""
MULTIPLICITY_METHOD = "step_down_min_p"
NOISE_SHARE = 0.5
"""Flag a metric when its paired measurement error exceeds this share of the paired spread."""
SUBSET_PAIRS = (0, 1)
SUBSET_CHUNKS = (1, 2)
"""The subset check: ``mnist1d`` pairs whose checkpoints are measured again on these disjoint
subsets (chunk 0 is the paired measurement itself)."""
FIXED_TET_LAMBDA = 0.05

POPULATION_FLATNESS = (
    "--samples",
    "512",
    "--ascent-samples",
    "256",
    "--no-per-step",
    "--adaptive-restarts",
    "1",
    "--adaptive-sweep",
    "--trace-matvecs",
    "12",
    "--fixed-tet-lambda",
    str(FIXED_TET_LAMBDA),
)
"""The population's cheaper flatness flags: half the samples, no per-step losses, one APGD start
at one radius, XTrace with 12 products (about 8 % relative error instead of 3 %)."""


def claim_of(metric: str) -> str | None:
    """The claimed direction of TET - SDT (``higher``/``lower``), None for descriptive metrics."""
    if metric in DESCRIPTIVE:
        return None
    return CLAIMS.get(metric, "lower")


@dataclass(frozen=True)
class PopulationDesign:
    """The population grid and its stopping rule.

    Attributes:
        losses: ``(method, tet_lambda)`` levels.
        lr: Learning rates.
        batch_size: Batch sizes.
        seeds: Seeds per cell (seed ``k`` trains on draw ``2000 + k``).
        stop_at_train_loss: Train-split L_SDT (eval mode) at which a run stops (None: no
            criterion, the cap only).
        epoch_cap: Epochs at most (and the length of the cosine schedule).
    """

    losses: tuple = (("sdt", 0.05), ("tet", 0.05), ("tet", 0.001))
    lr: tuple = (0.0025, 0.005, 0.01)
    batch_size: tuple = (64, 128, 256)
    seeds: int = 4
    stop_at_train_loss: float | None = 0.1  # by the pilot of configs/README.md
    epoch_cap: int = 30


@dataclass(frozen=True)
class StudyScale:
    """How much the study runs. ``full`` (``make study``) is what the committed report holds.

    Attributes:
        name: ``tiny``, ``demo`` or ``full``.
        pairs: Benchmark -> paired seeds (benchmarks left out are not run).
        epochs: Benchmark -> training epochs (missing: the committed setting).
        test_samples: MNIST-1D common test samples.
        mnist1d_samples: Generated MNIST-1D samples per draw (None: the committed 5,000).
        population: The population (None: none).
        flatness: Extra ``analysis/flatness.py`` flags of the paired runs (empty: the defaults).
        population_flatness: ``analysis/flatness.py`` flags of the population.
        subsets: Whether to run the subset check.
        train_extra: Extra ``training/run.py`` flags (tiny scales only).
        jobs: Subprocesses at a time (the local launcher).
        connectivity_in_all: Whether ``--stage all`` runs the ``connectivity`` stage. The full
            scale runs it on its own (``--stage connectivity``): its 58 curve fits would take the
            study past its time budget.
    """

    name: str = "full"
    pairs: dict = field(default_factory=lambda: {b: BENCHMARKS[b].pairs for b in SMALL_BENCHMARKS})
    epochs: dict = field(default_factory=dict)
    test_samples: int = TEST_SAMPLES
    mnist1d_samples: int | None = None
    population: PopulationDesign | None = PopulationDesign()
    flatness: tuple = ()
    population_flatness: tuple = POPULATION_FLATNESS
    subsets: bool = True
    train_extra: tuple = ()
    jobs: int = 2
    connectivity_in_all: bool = False

    def only(self, name: str) -> StudyScale:
        """This scale on benchmark ``name`` alone (``--benchmark``): its pairs and epochs here,
        else the benchmark's full design; no population, no subset check."""
        pairs = {name: self.pairs.get(name, BENCHMARKS[name].pairs)}
        return replace(self, pairs=pairs, population=None, subsets=False)


_TINY_FLATNESS = (
    "--samples",
    "32",
    "--per-step-samples",
    "32",
    "--ascent-samples",
    "32",
    "--trace-matvecs",
    "6",
    "--lanczos-max-steps",
    "6",
    "--epsilon-steps",
    "2",
    "--adaptive-steps",
    "2",
    "--adaptive-restarts",
    "1",
    "--average-samples",
    "2",
)

_PAPER_TINY_FLATNESS = (
    *("--samples", "8", "--ascent-samples", "8", "--batch-size", "8", "--no-per-step"),
    *("--trace-matvecs", "4", "--lanczos-max-steps", "3", "--epsilon-steps", "1"),
    *("--adaptive-steps", "1", "--adaptive-restarts", "1", "--adaptive-sweep"),
    *("--average-samples", "2"),
)
"""The smallest flatness settings that run every measure (a chain check, not a measurement)."""

SCALES = {
    "full": StudyScale(),
    # make demo: MNIST-1D static only (the demo's own runs cover digits), 4 pairs at 10 epochs, a
    # 5,000-sample test set, the population's cheaper flatness settings, an 8-run population
    "demo": StudyScale(
        name="demo",
        pairs={"mnist1d": 4},
        epochs={"mnist1d": 10},
        test_samples=5000,
        population=PopulationDesign(
            losses=(("sdt", 0.05), ("tet", 0.05)),
            lr=(0.005, 0.01),
            batch_size=(128, 256),
            seeds=1,
            epoch_cap=10,
        ),
        flatness=POPULATION_FLATNESS,
        subsets=False,
        connectivity_in_all=True,
    ),
    "tiny": StudyScale(
        name="tiny",
        pairs={"digits": 2, "mnist1d": 2, "mnist1d_sequence": 2},
        epochs={"digits": 1, "mnist1d": 1, "mnist1d_sequence": 1},
        test_samples=300,
        mnist1d_samples=200,
        population=PopulationDesign(
            losses=(("sdt", 0.05), ("tet", 0.05)),
            lr=(0.005,),
            batch_size=(64, 128),
            seeds=1,
            stop_at_train_loss=10.0,  # met after the first epoch: the criterion's path, quickly
            epoch_cap=2,
        ),
        flatness=_TINY_FLATNESS,
        population_flatness=(*_TINY_FLATNESS, "--no-per-step", "--fixed-tet-lambda", "0.05"),
        train_extra=("--steps-per-epoch", "3", "--no-gradient-stats"),
        connectivity_in_all=True,
    ),
    # the paper-scale study (docs/cluster.md): every paper benchmark at its own pairs and
    # epochs, on a cluster (python analysis/study.py --scale paper --launcher slurm)
    "paper": StudyScale(
        name="paper",
        pairs={b: BENCHMARKS[b].pairs for b in PAPER_BENCHMARKS},
        epochs={b: BENCHMARKS[b].epochs for b in PAPER_BENCHMARKS},
        population=None,
        subsets=False,
    ),
    # the paper-scale chain, tiny: ResNet-19 at width 1/16, T 2, 1 epoch of 2 steps, 2 pairs, on
    # whatever CIFAR-10 files --data-root holds (the tests write synthetic ones)
    "paper-tiny": StudyScale(
        name="paper-tiny",
        pairs={"cifar10-resnet19": 2},
        epochs={"cifar10-resnet19": 1},
        population=None,
        flatness=_PAPER_TINY_FLATNESS,
        subsets=False,
        train_extra=(
            "--width",
            "0.0625",
            "--T",
            "2",
            "--batch-size",
            "8",
            "--steps-per-epoch",
            "2",
        ),
    ),
}

STAGES = ("paired", "temporal", "population", "subsets", "connectivity", "report")
"""``paired``: digits and MNIST-1D static, trained and measured; ``temporal``: MNIST-1D sequence;
``population``; ``subsets``: the subset check (needs ``paired``); ``connectivity``: barriers
between MNIST-1D minima and the surrogate-to-spike gap (needs ``paired`` and ``population``;
its design is ``analysis.evidence.study_connectivity``); ``report``: tables, figures and STUDY.md
from whatever exists."""


@dataclass(frozen=True)
class Margin:
    """Equivalence margin of one metric: absolute, or relative to |mean of SDT| over seeds."""

    value: float
    relative: bool
    reason: str


MARGINS = {
    "test_acc": Margin(
        0.005,
        False,
        "0.5 points: below any accuracy difference worth a method "
        "change; 5 test samples on MNIST-1D, ~2 on digits",
    ),
    "acc_gap": Margin(0.005, False, "0.5 points, the same scale as the accuracy itself"),
    "loss_gap": Margin(
        0.10, True, "10 % of SDT's test-minus-train loss: a loss gap has no natural absolute scale"
    ),
    "flatness": Margin(
        0.10,
        True,
        "10 % of SDT's mean value: curvature and sharpness have no "
        "natural unit; 10 % is below the seed-to-seed spread seen in the 3-seed "
        "digits report",
    ),
}
"""Fixed before any study result (issue 12); a relative margin is ``value * |mean over seeds of
SDT|``."""


def margin_for(metric: str, sdt_values) -> tuple[float, Margin]:
    """The absolute δ used for ``metric`` and its :class:`Margin` (flatness metrics share one).

    A relative margin is applied as ``δ = value * |mean(SDT values)|`` (NaN dropped); it never
    depends on TET's values or on the differences.
    """
    margin = MARGINS.get(metric, MARGINS["flatness"])
    if metric in DESCRIPTIVE:
        margin = MARGINS["test_acc"]
    if not margin.relative:
        return margin.value, margin
    values = [float(v) for v in sdt_values if v == v]
    mean = abs(sum(values) / len(values)) if values else float("nan")
    return margin.value * mean if mean > 0 else float("nan"), margin


def _train(argv: list, scale: StudyScale) -> tuple[tuple[str, ...]]:
    return (command_line("training/run.py", *argv, *scale.train_extra, "--resume", "--quiet"),)


def _benchmark_args(benchmark: Benchmark, scale: StudyScale, data_root: str) -> list[str]:
    args = ["--config", str(benchmark.config)] if benchmark.config else []
    if benchmark.preset:
        args += ["--preset", benchmark.preset]
    epochs = scale.epochs.get(benchmark.name)
    if epochs:
        args += ["--epochs", str(epochs)]
    if benchmark.data == "mnist1d":
        if scale.mnist1d_samples:
            args += ["--mnist1d-samples", str(scale.mnist1d_samples)]
        args += ["--test-every", "1000"]  # the large test set: after the last epoch only
    args += list(benchmark.train_flags)
    if benchmark.data_folder:
        data_root = str(Path(data_root) / benchmark.data_folder)
    return args + ["--no-gradient-stats", "--data-root", data_root]


def paired_jobs(root: Path, name: str, scale: StudyScale, data_root: str) -> list[Job]:
    """SDT and TET of every pair of benchmark ``name``, one job per run (``root/<name>``)."""
    benchmark, out, jobs = BENCHMARKS[name], root / name, []
    for pair, method in itertools.product(range(scale.pairs[name]), ("sdt", "tet")):
        data = benchmark.data_args(pair, scale.test_samples)
        argv = [*_benchmark_args(benchmark, scale, data_root), *data, "--method", method]
        argv += ["--seeds", str(pair), "--out", out]
        done = out / f"{method}-seed{pair}.done"
        name_ = f"train {name} {method} pair {pair}"
        jobs.append(Job(name_, _train(argv, scale), (done,), done, benchmark.training))
    return jobs


def gpu_hours(benchmark: Benchmark, pairs: int | None = None, epochs: int | None = None) -> dict:
    """The GPU-hours of a benchmark's training: ``pairs x 2 x epochs x seconds_per_epoch x GPUs /
    3600``, or None where the per-epoch time is unmeasured (the formula is returned either way).

    Flatness jobs (one per pair, on one GPU) are not in the number: their time on a paper model
    is unmeasured too.
    """
    pairs = benchmark.pairs if pairs is None else pairs
    epochs = benchmark.epochs if epochs is None else epochs
    runs, gpus = 2 * pairs, benchmark.training.ranks
    known = benchmark.seconds_per_epoch is not None and epochs is not None
    return {
        "benchmark": benchmark.name,
        "runs": runs,
        "epochs": epochs,
        "gpus_per_run": gpus,
        "seconds_per_epoch": benchmark.seconds_per_epoch,
        "gpu_hours": runs * epochs * benchmark.seconds_per_epoch * gpus / 3600 if known else None,
        "formula": f"{runs} runs x {epochs} epochs x seconds_per_epoch x {gpus} GPU / 3600",
        "flatness_jobs": pairs,
    }


def population_cells(design: PopulationDesign) -> list[dict]:
    """Every population run: ``cell`` (its folder), loss, method, tet_lambda, lr, batch_size,
    seed."""
    cells = []
    for (method, lamb), lr, batch, seed in itertools.product(
        design.losses, design.lr, design.batch_size, range(design.seeds)
    ):
        loss = "sdt" if method == "sdt" else f"tet{lamb:g}"
        cells.append(
            {
                "cell": f"{loss}-lr{lr:g}-b{batch}",
                "loss": loss,
                "method": method,
                "tet_lambda": lamb,
                "lr": lr,
                "batch_size": batch,
                "seed": seed,
            }
        )
    return cells


def population_jobs(root: Path, scale: StudyScale, data_root: str) -> list[Job]:
    """One training job per population run (under ``root/population/<cell>``)."""
    design, jobs = scale.population, []
    if design is None:
        return jobs
    for c in population_cells(design):
        out = root / "population" / c["cell"]
        argv = ["--config", CONFIGS / "mnist1d.json", "--method", c["method"]]
        argv += ["--tet-lambda", c["tet_lambda"], "--lr", c["lr"], "--batch-size", c["batch_size"]]
        argv += ["--seeds", c["seed"], "--epochs", design.epoch_cap, "--no-gradient-stats"]
        argv += ["--mnist1d-seed", 2000 + c["seed"], "--mnist1d-test-samples", scale.test_samples]
        argv += ["--test-every", "1000", "--out", out, "--data-root", data_root]
        if design.stop_at_train_loss is not None:
            argv += ["--stop-at-train-loss", design.stop_at_train_loss]
        if scale.mnist1d_samples:
            argv += ["--mnist1d-samples", scale.mnist1d_samples]
        done = out / f"seed{c['seed']}.done"
        name = f"train population {c['cell']} seed {c['seed']}"
        jobs.append(Job(name, _train(argv, scale), (done,), marker=done))
    return jobs


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.rglob("last.pt"))


def _pair_of(path: Path) -> int:
    """The seed of a paired run's folder (``...-seed<s>``)."""
    return int(path.parent.name.rsplit("seed", 1)[1])


def _flatness_job(name: str, checkpoints, folder: Path, flags) -> Job:
    """``analysis/flatness.py`` of ``checkpoints`` into ``folder`` with ``flags``; done when its
    ``flatness.csv`` exists."""
    line = command_line(
        "analysis/flatness.py", *checkpoints, "--out", folder, "--overwrite", "--quiet", *flags
    )
    return Job(name, (line,), (folder / "flatness.csv",))


def flatness_jobs(root: Path, name: str, scale: StudyScale) -> list[Job]:
    """``analysis/flatness.py`` of each pair's two checkpoints, data subset and probes seeded by
    the pair (``root/flatness/<name>/pair<s>/flatness.csv``); run after training."""
    by_pair: dict[int, list[Path]] = {}
    for path in _checkpoints(root / name):
        by_pair.setdefault(_pair_of(path), []).append(path)
    benchmark, jobs = BENCHMARKS[name], []
    for pair, paths in sorted(by_pair.items()):
        folder = root / "flatness" / name / f"pair{pair:03d}"
        flags = ("--data-seed", pair, "--probe-seed", pair, *benchmark.flatness, *scale.flatness)
        job = _flatness_job(f"flatness {name} pair {pair}", paths, folder, flags)
        jobs.append(replace(job, resources=benchmark.measuring))
    return jobs


def met_criterion(run: Path) -> bool:
    """Whether a finished run met its stopping criterion (``stop_at_train_loss``; always, without
    one): its last train-split L_SDT (eval mode) is at or below the threshold."""
    threshold = json.loads((run / "config.json").read_text()).get("stop_at_train_loss") or None
    if threshold is None:
        return True
    with open(run / "metrics.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return float(last["train_eval_l_sdt"]) <= threshold


def population_flatness_jobs(root: Path, scale: StudyScale, chunk: int = 6) -> list[Job]:
    """The flatness of the population runs that met the stopping criterion (the others are left
    out of the analysis), in chunks of ``chunk`` checkpoints, with the population's cheaper
    settings and probe seed 0 for every run (common random numbers across the grid)."""
    paths = [p for p in _checkpoints(root / "population") if met_criterion(p.parent)]
    jobs = []
    for k in range(0, len(paths), chunk):
        folder = root / "flatness" / "population" / f"part{k // chunk:03d}"
        name = f"flatness population part {k // chunk}"
        jobs.append(_flatness_job(name, paths[k : k + chunk], folder, scale.population_flatness))
    return jobs


def subset_jobs(root: Path, scale: StudyScale) -> list[Job]:
    """The subset check: :data:`SUBSET_PAIRS`' checkpoints of ``mnist1d`` again on each disjoint
    subset of :data:`SUBSET_CHUNKS` (no per-step losses; the pair's probes)."""
    jobs = []
    paths = [p for p in _checkpoints(root / "mnist1d") if _pair_of(p) in SUBSET_PAIRS]
    for chunk, pair in itertools.product(SUBSET_CHUNKS, SUBSET_PAIRS):
        mine = [p for p in paths if _pair_of(p) == pair]
        if not mine:
            continue
        folder = root / "flatness" / "subsets" / f"pair{pair:03d}-chunk{chunk}"
        flags = ("--data-seed", pair, "--probe-seed", pair, *scale.flatness)
        flags += ("--no-per-step", "--data-chunk", chunk)
        name = f"flatness subsets pair {pair} chunk {chunk}"
        jobs.append(_flatness_job(name, mine, folder, flags))
    return jobs
