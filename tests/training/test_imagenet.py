"""ImageNet: clear errors without torchvision or the folder layout; transforms if present."""

import sys

import pytest
import torch

from training.data import imagenet


@pytest.fixture
def imagenet_root(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    return tmp_path


def test_missing_torchvision_names_the_extra(imagenet_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(ImportError, match=r"pip install 'tet-landscape\[imagenet\]'"):
        imagenet.imagenet_datasets(imagenet_root)
    with pytest.raises(ImportError, match="ImageNet needs torchvision"):
        imagenet.imagenet_loaders(imagenet_root, batch_size=2, generator=torch.Generator())


def test_broken_torchvision_names_the_extra(imagenet_root, monkeypatch):
    """A torchvision built for another torch fails at import with a RuntimeError."""

    class BrokenFinder:
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenFinder(), *sys.meta_path])
    with pytest.raises(ImportError, match=r"tet-landscape\[imagenet\].*torchvision::nms"):
        imagenet.imagenet_datasets(imagenet_root)


@pytest.mark.parametrize("present", [[], ["train"], ["val"]])
def test_missing_folder_names_the_layout(tmp_path, present):
    for split in present:
        (tmp_path / split).mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected .*/train/<wnid>/\*\.JPEG"):
        imagenet.imagenet_datasets(tmp_path)


def test_transforms_with_torchvision(imagenet_root):
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        pytest.skip("torchvision is not importable")
    from PIL import Image

    for split in ("train", "val"):
        (imagenet_root / split / "n01440764").mkdir()
        Image.new("RGB", (300, 260), (255, 0, 0)).save(
            imagenet_root / split / "n01440764" / "a.JPEG"
        )
    train, val = imagenet.imagenet_datasets(imagenet_root)
    for dataset in (train, val):
        image, label = dataset[0]
        assert image.shape == (3, 224, 224) and label == 0
    expected = (1 - imagenet.IMAGENET_MEAN[0]) / imagenet.IMAGENET_STD[0]
    assert abs(val[0][0][0].mean().item() - expected) < 0.05  # normalized red channel
