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

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_datasets",
    "imagenet_loaders",
    "ImageNetLoader",
]

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


class ImageNetLoader:
    """Batches from a torchvision dataset with the interface of ``training.data.datasets.TensorLoader``.

    Every rank draws the same global permutation (seeded by ``(seed, epoch)``) and loads only its
    contiguous shard of each global batch, so no sample is decoded twice; evaluation loaders take
    a disjoint, unpadded shard of the whole set.

    Args:
        dataset: A map-style dataset of ``(image [3, H, W], label)``.
        batch_size: Global batch size.
        device: Where batches are moved.
        shuffle: Training order (else sequential, sharded by rank).
        seed: Base seed of the per-epoch permutation.
        rank: This process's rank.
        world: Number of processes.
        num_workers: Decoding processes.
    """

    is_sharded = True

    def __init__(
        self,
        dataset,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        num_workers: int = 8,
    ):
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world
        self.num_workers = num_workers

    def _part(self, n: int) -> slice:
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def __len__(self) -> int:
        n = len(self.dataset)
        if not self.shuffle:
            n = len(range(n)[self._part(n)])
        return -(-n // self.batch_size)

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def batches(self, epoch: int = 0, generator: torch.Generator | None = None):
        """Yield ``(x [B_local, 3, H, W], y [B_local])`` on the device."""
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=generator or self.generator(epoch)).tolist()
            globals_ = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
            index = [batch[self._part(len(batch))] for batch in globals_]
        else:
            mine = list(range(n))[self._part(n)]
            index = [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        loader = DataLoader(
            self.dataset,
            batch_sampler=index,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
