"""Every experiment of the paper as a named preset: ``python training/run.py --preset NAME``.

A preset is a set of TrainConfig defaults; any flag given on the command line overrides it.
Where the paper and the official code disagree the preset follows the paper, and its description
says what the code did (tet_reference.md sections 4 and 6). The paper's optimizer settings are in
its appendix, which was not available: the presets use the official code's Adam (lr 1e-3, cosine
to 0, no weight decay).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.errors import ConfigError

__all__ = ["Preset", "PRESETS", "get_preset", "preset_table"]

_ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}


@dataclass(frozen=True)
class Preset:
    """A named experiment: a one-line description and the config values it sets."""

    description: str
    values: dict = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # config fields the user must set (e.g. init_from)


def _cifar_presets() -> dict[str, Preset]:
    presets = {}
    for classes in (10, 100):
        for T in (2, 4, 6):
            for method in ("sdt", "tet"):
                presets[f"cifar{classes}-resnet19-T{T}-{method}"] = Preset(
                    f"ResNet-19, CIFAR-{classes}, T={T}, {method.upper()} (lambda 0.05), 300 "
                    "epochs, batch 128, crop+flip, Adam 1e-3 cosine [code: CIFAR-10 T=2, "
                    "100 epochs, lambda 0, batch 512 over GPUs]",
                    {
                        "model": "resnet19",
                        "dataset": f"cifar{classes}",
                        "data_root": "data/cifar",
                        "T": T,
                        "method": method,
                        "tet_lambda": 0.05,
                        "epochs": 300,
                        "batch_size": 128,
                        "augment": True,
                        "eval_train": False,
                        **_ADAM,
                    },
                )
    return presets


def _dvs_presets() -> dict[str, Preset]:
    presets = {}
    for method in ("sdt", "tet"):
        for augment in (True, False):
            name = f"dvs-vggsnn-{method}" + ("" if augment else "-noaug")
            presets[name] = Preset(
                f"VGGSNN, CIFAR10-DVS (48x48, 10 frames, 9:1 split), {method.upper()} "
                f"(lambda 1e-3), {'flip+roll' if augment else 'no'} augmentation, 300 epochs, "
                "batch 128 [code: 150 epochs; 2022 script trained VGGSNNwoAP]",
                {
                    "model": "vggsnn",
                    "dataset": "cifar10_dvs",
                    "data_root": "data/cifar10_dvs",
                    "T": 10,
                    "method": method,
                    "tet_lambda": 1e-3,
                    "epochs": 300,
                    "batch_size": 128,
                    "augment": augment,
                    "eval_train": False,
                    "stats_samples": 64,
                    **_ADAM,
                },
            )
    presets["fig3-dvs-switch"] = Preset(
        "Fig. 3: VGGSNN on CIFAR10-DVS, SDT for 200 epochs, then TET to epoch 300 (lambda 1e-3)",
        {**presets["dvs-vggsnn-sdt"].values, "switch_to_tet_at": 200, "save_every": 10},
    )
    return presets


def _imagenet_presets() -> dict[str, Preset]:
    presets = {}
    for model, T in (("sew_resnet34", 4), ("spiking_resnet34", 6)):
        for method in ("sdt", "tet"):
            presets[f"imagenet-{model}-T{T}-{method}"] = Preset(
                f"{model} on ImageNet, T={T}, {method.upper()} (lambda 1e-3), 120 epochs, batch "
                "256 [not in the official repo; LIF with hard reset as the authors' SEW model]",
                {
                    "model": model,
                    "dataset": "imagenet",
                    "data_root": "data/imagenet",
                    "T": T,
                    "method": method,
                    "tet_lambda": 1e-3,
                    "epochs": 120,
                    "batch_size": 256,
                    "eval_train": False,
                    **_ADAM,
                },
            )
    return presets


def _tit_presets() -> dict[str, Preset]:
    base = _cifar_presets()["cifar100-resnet19-T2-tet"].values
    return {
        "tit-cifar100-T2": Preset(
            "TIT step 1 (Fig. 4): ResNet-19, CIFAR-100, TET at T=2 for 300 epochs (cost 600 t_s)",
            dict(base),
        ),
        "tit-cifar100-T6-finetune": Preset(
            "TIT step 2: fine-tune a T=2 checkpoint at T=6 for 50 epochs (needs --init-from "
            "CKPT; cost 300 t_s, vs 1800 t_s from scratch)",
            {**base, "T": 6, "epochs": 50},
            requires=("init_from",),
        ),
    }


PRESETS: dict[str, Preset] = {
    **_cifar_presets(),
    **_dvs_presets(),
    **_imagenet_presets(),
    **_tit_presets(),
}


def get_preset(name: str) -> Preset:
    """A preset by name.

    Raises:
        ConfigError: On an unknown name (lists the known ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_table() -> str:
    """One line per preset: name and description."""
    width = max(map(len, PRESETS))
    return "\n".join(f"{name:<{width}}  {p.description}" for name, p in PRESETS.items())
