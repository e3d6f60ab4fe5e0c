"""Convert state dicts saved by the official TET code into this toolkit's models.

Official code: github.com/Gus-Lab/temporal_efficient_training (now brain-intelligence-lab),
``models/resnet_models.py``, ``models/VGG_models.py`` and ``models/layers.py``.

Key names there follow from the module structure:

- ResNet-19 registers every conv and BN twice: as ``conv1``/``bn1`` and again inside
  ``conv1_s = tdLayer(conv1, bn1)``, and ``tdBatchNorm`` holds its ``BatchNorm2d`` both as ``bn``
  and as ``seqbn.module``. One BN therefore appears under four keys (``bn1.bn.*``,
  ``bn1.seqbn.module.*``, ``conv1_s.bn.bn.*``, ``conv1_s.bn.seqbn.module.*``) and one conv under two
  (``conv1.weight``, ``conv1_s.layer.module.weight``); ``fc1``/``fc1_s.layer.module`` likewise.
  The downsample is ``tdLayer(conv1x1, tdBatchNorm)``: ``downsample.layer.module.weight`` and
  ``downsample.bn.{bn,seqbn.module}.*``.
- VGGSNN: ``features.<i>.fwd.module.{0,1}.*`` (``Layer.fwd = SeqToANNContainer(conv, bn)``; pools
  have no parameters, so VGGSNN's conv layers sit at indices 0,1,3,4,6,7,9,10 and VGGSNNwoAP's at
  0..7) and ``classifier.module.*``.

At least one alias of each tensor must be present (``model.state_dict()`` holds all of them;
deduplicating savers such as safetensors keep one), and present aliases must be equal. The
official ``main_test.py`` loads with ``strict=False``, which hides mismatches; here a missing,
unexpected or conflicting key raises.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from training.runs.checkpoint import clean_state_dict

__all__ = ["OFFICIAL_MODELS", "convert_official_state_dict"]

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# (our module prefix, official module prefixes (aliases), parameter names)
_Entry = tuple[str, tuple[str, ...], tuple[str, ...]]


def _conv_bn_entries(ours: str, conv: str, bn: str, td_layer: str | None) -> list[_Entry]:
    """A ResNet conv + tdBatchNorm pair, registered directly and (optionally) in a tdLayer."""
    convs, bns = [conv], [f"{bn}.bn", f"{bn}.seqbn.module"]
    if td_layer is not None:
        convs.append(f"{td_layer}.layer.module")
        bns += [f"{td_layer}.bn.bn", f"{td_layer}.bn.seqbn.module"]
    return [(f"{ours}.0", tuple(convs), ("weight",)), (f"{ours}.1", tuple(bns), _BN)]


def _resnet19_entries() -> list[_Entry]:
    entries = _conv_bn_entries("stem", "conv1", "bn1", "conv1_s")
    for stage, num_blocks in zip((1, 2, 3), (3, 3, 2)):
        for index in range(num_blocks):
            p = f"layer{stage}.{index}"
            entries += _conv_bn_entries(f"{p}.conv1", f"{p}.conv1", f"{p}.bn1", f"{p}.conv1_s")
            entries += _conv_bn_entries(f"{p}.conv2", f"{p}.conv2", f"{p}.bn2", f"{p}.conv2_s")
            if index == 0:  # every stage's first block changes channels (64->128) or stride
                down = f"{p}.downsample"
                entries += _conv_bn_entries(down, f"{down}.layer.module", f"{down}.bn", None)
    for fc in ("fc1", "fc2"):
        entries.append((f"{fc}.0", (fc, f"{fc}_s.layer.module"), ("weight", "bias")))
    return entries


def _vgg_entries(official_indices: tuple[int, ...], our_indices: tuple[int, ...]) -> list[_Entry]:
    entries = []
    for theirs, ours in zip(official_indices, our_indices):
        conv, bn = f"features.{theirs}.fwd.module.0", f"features.{theirs}.fwd.module.1"
        entries.append((f"features.{ours}.0.0", (conv,), ("weight", "bias")))
        entries.append((f"features.{ours}.0.1", (bn,), _BN))
    entries.append(("classifier.0", ("classifier.module",), ("weight", "bias")))
    return entries


_VGG_CONV_INDICES = (0, 1, 3, 4, 6, 7, 9, 10)  # both in the official VGGSNN and in ours
OFFICIAL_MODELS = {
    "resnet19": _resnet19_entries,
    "vggsnn": lambda: _vgg_entries(_VGG_CONV_INDICES, _VGG_CONV_INDICES),
    "vggsnn_woap": lambda: _vgg_entries(tuple(range(8)), tuple(range(8))),
}
"""Registered model name -> builder of its key table; the official repo has no ImageNet models."""


def _gather(state: dict[str, Tensor], entries: list[_Entry]) -> tuple[dict, set, list, list]:
    """Pick one tensor per our key; record used, missing and conflicting official keys."""
    converted, used, missing, conflicting = {}, set(), [], []
    for ours, aliases, names in entries:
        for name in names:
            present = [f"{alias}.{name}" for alias in aliases if f"{alias}.{name}" in state]
            used.update(present)
            if not present:
                missing.append(f"{aliases[0]}.{name}")
                continue
            first = state[present[0]]
            conflicting += [key for key in present[1:] if not torch.equal(state[key], first)]
            converted[f"{ours}.{name}"] = first
    return converted, used, missing, conflicting


def _key_report(label: str, keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{label} {len(keys)}: {sorted(keys)[:limit]}{more}"


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor], model_name: str
) -> dict[str, Tensor]:
    """Map an official TET state dict to the keys of ``training.models.build(model_name)``.

    Args:
        state_dict: As saved by the official scripts (``model.state_dict()``), possibly with
            ``module.`` / ``_orig_mod.`` prefixes.
        model_name: ``resnet19``, ``vggsnn`` or ``vggsnn_woap``.

    Returns:
        A state dict for our model (``width=1``; ``num_classes`` from the classifier's shape)
        that loads with ``strict=True``. Tensors are shared with the input, not copied.

    Raises:
        ValueError: On an unknown model name, or when official keys are missing or unexpected,
            or when aliases of one tensor (ResNet-19 registers each BN four times) disagree.
    """
    if model_name not in OFFICIAL_MODELS:
        raise ValueError(
            f"no official TET checkpoint layout for {model_name!r}; "
            f"expected one of {sorted(OFFICIAL_MODELS)}"
        )
    state = clean_state_dict(dict(state_dict))  # leading prefixes only; inner .module. stays
    converted, used, missing, conflicting = _gather(state, OFFICIAL_MODELS[model_name]())
    unexpected = sorted(set(state) - used)
    if missing or unexpected or conflicting:
        problems = [
            _key_report(label, keys)
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("aliases that differ from the first alias", conflicting),
            )
            if keys
        ]
        raise ValueError(
            f"not an official TET {model_name} state dict; " + "; ".join(problems) + ". "
            "Is the model name right (VGGSNN vs VGGSNNwoAP)?"
        )
    return converted
