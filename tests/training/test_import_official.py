import pytest
import torch

from tests.training.test_official import OfficialResNet19
from training.import_official import main
from training.runs import checkpoint


def test_import_official_writes_a_loadable_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    official = OfficialResNet19(num_classes=100)
    state = {f"module.{k}": v for k, v in official.state_dict().items()}  # saved under DDP
    torch.save(state, tmp_path / "official.pth")
    out = tmp_path / "ckpt.pt"
    assert main([str(tmp_path / "official.pth"), "--model", "resnet19", "--out", str(out)]) == 0
    read = checkpoint.read(out)
    model, config = read.model(), read.config
    assert config.dataset == "cifar100" and read.num_classes == 100
    assert config.tet_lambda == 0.05 and config.T == 4
    assert read.raw["imported_from"] == str(tmp_path / "official.pth")
    ours = model.state_dict()
    torch.testing.assert_close(ours["fc2.0.weight"], official.state_dict()["fc2.weight"])
    torch.load(out, weights_only=True)


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_import_official_bad_input_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.pth"
    if content == "garbage":
        path.write_bytes(b"not a zip")
    else:
        torch.save({"conv.weight": torch.zeros(1)}, path)
    assert main([str(path), "--model", "vggsnn", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("import_official.py: error:")
    assert not (tmp_path / "o.pt").exists()
