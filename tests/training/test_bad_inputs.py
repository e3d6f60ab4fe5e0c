"""Bad inputs to training/run.py and training/import_official.py: each one is refused before any
work in one line (no traceback), with exit 2 for usage and config errors and 1 for runtime errors,
and leaves nothing that looks like a run (no config.json, no last.pt).

Most cases call ``main(argv)`` in-process (the same code the command line runs); a handful go
through a real subprocess to check the wrapper as well.
"""

import _codecs
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from training import import_official
from training.run import main

RUN = [sys.executable, str(REPO / "training" / "run.py")]
FAST = ["--epochs", "1", "--steps-per-epoch", "1", "--no-gradient-stats", "--no-eval-train"]


class _BadCodec:
    def __reduce__(self):
        return (_codecs.encode, ("\x00" * 3072, "no-such-codec"))


def _cifar(root, case: str):
    """A fake CIFAR-10 folder (4 images per batch) with one defect."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = np.zeros((4, 3072), dtype=np.uint8)
        labels = [0, 1, 2, 3]
        if name == "data_batch_2" and case == "labels":
            labels = [0, 1, 10, 3]
        if name == "test_batch" and case == "count":
            labels = [0, 1]
        batch = {b"data": data, b"labels": labels}
        if name == "data_batch_1" and case == "codec":
            batch = {b"data": _BadCodec(), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def _npz(path, shape):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.random((8, *shape)),
        y_train=np.arange(8) % 2,
        x_test=rng.random((4, *shape)),
        y_test=np.arange(4) % 2,
    )
    return path


def _config(path, values):
    path.write_text(json.dumps(values))
    return path


CASES = [
    # (id, argv (with {tmp} for the test's folder), exit code, words in the message)
    ("surrogate", ["--surrogate", "foo"], 2, "invalid choice: 'foo'"),
    ("surrogate-alpha", ["--surrogate-alpha", "-1"], 2, "--surrogate-alpha must be > 0"),
    ("width", ["--width", "-1"], 2, "width must be > 0"),
    ("stats-samples-0", ["--stats-samples", "0"], 2, "--stats-samples must be >= 1"),
    ("stats-samples-neg", ["--stats-samples", "-5"], 2, "--stats-samples must be >= 1"),
    ("momentum", ["--momentum", "-1"], 2, "momentum must be >= 0"),
    ("weight-decay", ["--weight-decay", "-1"], 2, "--weight-decay must be >= 0"),
    ("device", ["--device", "bogus"], 2, "device must be auto, cpu, cuda or cuda:N"),
    ("tau", ["--tau", "-1"], 2, "tau must be in [0, 1], got -1.0"),
    ("v-threshold", ["--v-threshold", "0"], 2, "--v-threshold must be > 0"),
    ("save-every", ["--save-every", "-1"], 2, "--save-every must be >= 0"),
    ("steps-per-epoch", ["--steps-per-epoch", "-1"], 2, "--steps-per-epoch must be >= 0"),
    ("dataset", ["--dataset", "bogus"], 2, "invalid choice: 'bogus'"),
    ("optimizer", ["--optimizer", "rmsprop"], 2, "invalid choice: 'rmsprop'"),
    ("epochs", ["--epochs", "0"], 2, "epochs must be >= 1"),
    ("lr-inf", ["--lr", "inf"], 2, "lr must be finite, got inf"),
    ("config-null", ["--config", "{tmp}/null.json"], 2, "lr must not be null, got None"),
    ("config-bool", ["--config", "{tmp}/bool.json"], 2, "augment must be true or false"),
    ("config-method", ["--config", "{tmp}/method.json"], 2, "method must be one of sdt, tet"),
    ("config-unknown", ["--config", "{tmp}/unknown.json"], 2, "unknown config field(s) ['lrr']"),
    (
        "npz-shape",
        ["--dataset", "npz", "--data-root", "{tmp}/flat.npz", "--model", "spiking_mlp"],
        2,
        "model spiking_mlp on npz samples of shape [1, 1, 40] fails: mat1 and mat2 shapes",
    ),
    (
        "npz-labels",
        ["--dataset", "npz", "--data-root", "{tmp}/labels.npz"],
        2,
        "y_train has shape [7] for x_train of shape [8, 1, 8, 8]",
    ),
    (
        "cifar-codec",
        ["--dataset", "cifar10", "--data-root", "{tmp}/codec", "--model", "spiking_mlp"],
        2,
        "not a valid CIFAR python batch: unknown encoding",
    ),
    (
        "cifar-labels",
        ["--dataset", "cifar10", "--data-root", "{tmp}/labels", "--model", "spiking_mlp"],
        2,
        "labels range over 0..10; expected 0..9",
    ),
    (
        "cifar-count",
        ["--dataset", "cifar10", "--data-root", "{tmp}/count", "--model", "spiking_mlp"],
        2,
        "2 labels for 4 images; expected one label per image",
    ),
    # hostile inputs found by trying every command as an attacker would (issue 17)
    *(
        (f"npz-{case}", ["--dataset", "npz", "--data-root", f"{{tmp}}/{case}.npz"], 2, message)
        for case, message in (
            ("text", "is not a readable .npz file"),
            ("object", "x_train cannot be read without pickle"),
            ("strings", "y_train has dtype <U1; expected numbers"),
            ("half", "y_train holds non-integer labels"),
            ("nanlabels", "y_train holds NaN or infinite values"),
            ("naninputs", "x_test holds NaN or infinite values"),
            ("missing", "lacks array(s) ['y_test']"),
            ("negative", "labels range over -1..1; expected 0..1"),
        )
    ),
    ("switch-never", ["--method", "sdt", "--switch-to-tet-at", "50"], 2, "never switch"),
    ("resume-overwrite", ["--resume", "--overwrite"], 2, "contradict each other"),
    ("method-twice", ["--method", "sdt", "sdt"], 2, "--method lists ['sdt', 'sdt']"),
    ("seeds-twice", ["--seeds", "0", "0"], 2, "--seeds lists [0, 0]"),
    ("phi-inf", ["--tet-phi", "inf"], 2, "--tet-phi must be finite, got inf"),
    ("lambda-nan", ["--tet-lambda", "nan"], 2, "--tet-lambda must be a number, not NaN"),
    ("T-huge", ["--T", "100000"], 2, "--T must be in [1, 1000], got 100000"),
    ("upsample-huge", ["--upsample", "1000"], 2, "--upsample must be in [1, 32], got 1000"),
    ("config-binary", ["--config", "{tmp}/binary.json"], 2, "not UTF-8 text"),
    ("config-deep", ["--config", "{tmp}/deep.json"], 2, "nested too deep"),
    ("config-list", ["--config", "{tmp}/list.json"], 2, "must hold a JSON object"),
    ("init-from-text", ["--init-from", "{tmp}/text.npz"], 2, "not a readable checkpoint"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    _config(tmp / "null.json", {"lr": None})
    _config(tmp / "bool.json", {"augment": "false"})
    _config(tmp / "method.json", {"method": "foo"})
    _config(tmp / "unknown.json", {"lrr": 1})
    _npz(tmp / "flat.npz", (1, 1, 40))
    with np.load(_npz(tmp / "labels.npz", (1, 8, 8))) as arrays:
        np.savez(tmp / "labels.npz", **{**arrays, "y_train": arrays["y_train"][:7]})
    for case in ("codec", "labels", "count"):
        _cifar(tmp / case, case)
    _hostile_npz(tmp)
    (tmp / "binary.json").write_bytes(bytes(range(256)))
    (tmp / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _config(tmp / "list.json", [1, 2])
    return tmp


def _hostile_npz(tmp):
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 1, 8, 8)), np.arange(8) % 2
    arrays = {"x_train": x, "y_train": y, "x_test": x[:4], "y_test": y[:4]}
    (tmp / "text.npz").write_text("not an npz\n")
    np.savez(tmp / "object.npz", **{**arrays, "x_train": np.array([None] * 8, dtype=object)})
    np.savez(tmp / "strings.npz", **{**arrays, "y_train": np.array(list("ab" * 4))})
    np.savez(tmp / "half.npz", **{**arrays, "y_train": y + 0.5})
    np.savez(tmp / "nanlabels.npz", **{**arrays, "y_train": np.where(y == 1, np.nan, 0.0)})
    nan_inputs = x[:4].copy()
    nan_inputs[0, 0, 0, 0] = np.nan
    np.savez(tmp / "naninputs.npz", **{**arrays, "x_test": nan_inputs})
    np.savez(tmp / "missing.npz", **{k: v for k, v in arrays.items() if k != "y_test"})
    np.savez(tmp / "negative.npz", **{**arrays, "y_test": np.array([-1, 0, 1, 0])})


def _assert_refused(out, code, expected, message, stderr):
    lines = stderr.strip().splitlines()
    assert code == expected, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert message in lines[0], lines[0]
    assert not list(out.rglob("config.json")) and not list(out.rglob("*.pt"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_in_process(case, inputs, tmp_path, capsys):
    _, argv, expected, message = case
    argv = [a.replace("{tmp}", str(inputs)) for a in argv]
    out = tmp_path / "runs"
    try:
        code = main([*FAST, *argv, "--out", str(out), "--quiet"])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    _assert_refused(out, code, expected, message, capsys.readouterr().err)


SUBPROCESS = ["surrogate", "config-bool", "npz-shape", "cifar-labels"]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_through_the_command_line(name, inputs, tmp_path):
    _, argv, expected, message = next(c for c in CASES if c[0] == name)
    argv = [a.replace("{tmp}", str(inputs)) for a in argv]
    out = tmp_path / "runs"
    command = [*RUN, *FAST, *argv, "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    _assert_refused(out, result.returncode, expected, message, result.stderr)


def test_divergence_at_a_huge_learning_rate_fails_with_the_message(tmp_path, capsys):
    argv = ["--lr", "1e20", "--epochs", "2", "--no-gradient-stats", "--no-eval-train"]
    code = main([*argv, "--method", "tet", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "became inf" in err[0] or "became nan" in err[0], err[0]
    assert "last good checkpoint: none" in err[0]
    assert not list(tmp_path.rglob("last.pt"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--T", "0"], "T must be in [1, 1000], got 0"),
        (["--tet-lambda", "2"], "tet_lambda must be in [0, 1], got 2.0"),
    ],
)
def test_import_official_refuses_bad_flags_before_reading(tmp_path, capsys, argv, message):
    out = tmp_path / "x.pt"
    code = import_official.main(["missing.pth", "--model", "resnet19", "--out", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert main([*FAST, "--out", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0], err
