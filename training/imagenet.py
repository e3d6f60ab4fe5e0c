"""ImageNet-1k through torchvision's ``ImageFolder``, with the official TET transforms.

Official ``data_loaders.py: build_imagenet``: train ``RandomResizedCrop(224)`` +
``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize``; val ``Resize(256)`` + ``CenterCrop(224)`` +
``ToTensor`` + ``Normalize``, with the ImageNet mean and std.

torchvision is an optional extra (``pip install 'tet-landscape[imagenet]'``). It is imported only
inside these functions, so the rest of the toolkit works on machines where it is missing or broken
(a torchvision build that does not match torch fails at import with
``operator torchvision::nms does not exist``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_datasets", "imagenet_loaders"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _import_torchvision():
    """``(torchvision.datasets, torchvision.transforms)``, or one clear ImportError."""
    try:
        from torchvision import datasets, transforms
    except Exception as error:  # ImportError if missing, RuntimeError/OSError if mismatched
        raise ImportError(
            "ImageNet needs torchvision: pip install 'tet-landscape[imagenet]' "
            f"(a torchvision build matching torch {torch.__version__}); "
            f"importing it failed with {type(error).__name__}: {error}"
        ) from error
    return datasets, transforms


def _check_layout(root: Path) -> None:
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"ImageNet folder {root / split} not found; expected {root}/train/<wnid>/*.JPEG "
                f"and {root}/val/<wnid>/*.JPEG (val sorted into class folders)"
            )


def imagenet_datasets(root: str | Path) -> tuple[Dataset, Dataset]:
    """Train and validation ``ImageFolder`` datasets with the official TET transforms.

    Args:
        root: Folder with ``train/`` and ``val/``, each holding one subfolder per class.

    Returns:
        ``(train, val)``; items are ``(image [3, 224, 224] float32, label int)``.

    Raises:
        FileNotFoundError: If ``root/train`` or ``root/val`` is missing.
        ImportError: If torchvision is missing or cannot be imported.
    """
    root = Path(root)
    _check_layout(root)
    datasets, transforms = _import_torchvision()
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    val_transform = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
    )
    train = datasets.ImageFolder(str(root / "train"), train_transform)
    val = datasets.ImageFolder(str(root / "val"), val_transform)
    return train, val


def imagenet_loaders(
    root: str | Path,
    batch_size: int,
    generator: torch.Generator,
    num_workers: int = 8,
    use_pinned_memory: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Shuffled train and ordered validation loaders over ``imagenet_datasets(root)``.

    Batches are static images ``[B, 3, 224, 224]``; the models repeat them over ``T`` time steps.
    The train order comes from ``generator``; the random crops and flips run in the workers,
    which PyTorch seeds from the loader's base seed, itself drawn from ``generator``.

    Args:
        root: Folder with ``train/`` and ``val/``.
        batch_size: Images per batch.
        generator: Shuffling and worker seeding.
        num_workers: Decoding processes per loader.
        use_pinned_memory: Page-locked host batches for faster copies to the GPU.

    Returns:
        ``(train_loader, val_loader)``.

    Raises:
        FileNotFoundError: If ``root/train`` or ``root/val`` is missing.
        ImportError: If torchvision is missing or cannot be imported.
    """
    train, val = imagenet_datasets(root)
    common = {"batch_size": batch_size, "num_workers": num_workers, "pin_memory": use_pinned_memory}
    train_loader = DataLoader(train, shuffle=True, generator=generator, **common)
    val_loader = DataLoader(val, shuffle=False, **common)
    return train_loader, val_loader
