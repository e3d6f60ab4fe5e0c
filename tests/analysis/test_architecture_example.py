"""ARCHITECTURE.md's example of a new measure works as written, and the flatness protocol then
asks for its settings (the protocol records every setting of every loss measure)."""

from __future__ import annotations

import dataclasses
import re

import torch

from analysis.measures import registry
from analysis.measures.flatness import FlatnessSettings
from analysis.measures.inputs import DataSpec, load_input
from tests.conftest import REPO
from tests.helpers import save_mlp
from training.runs import checkpoint


def _example() -> str:
    text = (REPO / "ARCHITECTURE.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())


def test_the_documented_measure_registers_and_estimates(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "MEASURES", dict(registry.MEASURES))  # leave the real one
    namespace = {}
    preamble = (
        "from dataclasses import dataclass\n"
        "from analysis.measures.inputs import LossObjective\n"
        "from analysis.measures.registry import Estimate, LossMeasure, register\n"
        "from toolkit.settings import check, option\n"
    )
    exec(preamble + _example(), namespace)
    measure = registry.get("gradient_norm")
    assert measure in registry.loss_measures() and measure.stream == 6
    input = load_input(checkpoint.read(save_mlp(tmp_path / "last.pt")), DataSpec(samples=16))
    loss = input.loss("sdt", dtype=torch.float64)
    found = measure.estimate(loss, measure.settings(scale=2.0), None)
    assert found.value == 2 * float(loss.objective.grad().norm()) and found.num_evaluations == 1
    protocol = {f.name for f in dataclasses.fields(FlatnessSettings)}
    missing = {f.name for f in dataclasses.fields(measure.settings)} - protocol
    assert missing == {"scale"}  # a new loss measure joins the protocol by adding its fields
