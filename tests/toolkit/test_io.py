"""The bottom floor: one atomic writer, one device resolver."""

import os
import stat

import pytest
import torch

from toolkit.errors import ConfigError
from toolkit.io import atomic_write, atomic_write_text, resolve_device, umask


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"

    def failing(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert list(tmp_path.iterdir()) == []


def test_torch_save_through_the_file_object(tmp_path):
    path = atomic_write(tmp_path / "x.pt", lambda file: torch.save({"a": torch.ones(2)}, file))
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_honour_the_umask(tmp_path, mask):
    previous = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "report.md", "hello\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert umask() == previous


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device 'bogus'"):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
