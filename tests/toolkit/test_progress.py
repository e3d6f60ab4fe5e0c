"""Progress: plain lines in a log file (stderr not a terminal), nothing when quiet."""

from __future__ import annotations

import io

import pytest

from toolkit import progress as progress_module
from toolkit.progress import Progress


class FakeClock:
    """``time.monotonic`` that advances only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


class Log:
    """What reached stderr, captured as a log file is (not a terminal)."""

    def __init__(self, capsys) -> None:
        self.capsys, self.text = capsys, ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def log(capsys) -> Log:
    assert not progress_module.sys.stderr.isatty()
    return Log(capsys)


def test_plain_lines_every_few_seconds_and_at_the_end(clock, log):
    with Progress(10, "Hessian of a.pt", "HVP", every=5.0) as bar:
        bar.update(2)
        clock.now += 4.0
        bar.update(1)  # 4 s: no line yet
        assert log.getvalue() == ""
        clock.now += 2.0
        bar.update(1)  # 6 s: one line, with an estimate of the rest
        clock.now += 1.0
        bar.update(6)
    assert bar.bar is None and bar.count == 10
    lines = log.getvalue().splitlines()
    assert lines == [
        "Hessian of a.pt: 4/10 HVP, 6 s, ~9 s left",
        "Hessian of a.pt: 10/10 HVP, 7 s",
    ]
    assert "\r" not in log.getvalue()


def test_estimated_and_unknown_totals(clock, log):
    with Progress(30, "lanczos", "HVP", estimate=True) as bar:
        bar.update(3)
    with Progress(None, "points", "point") as bar:
        bar.update(5)
    assert log.getvalue().splitlines() == [
        "lanczos: 3/~30 HVP, 0 s, ~0 s left",
        "points: 5/? point, 0 s",
    ]


def test_quiet_prints_nothing(clock, log):
    with Progress(4, "quiet", quiet=True, every=0.0) as bar:
        for _ in range(4):
            clock.now += 100.0
            bar.update()
    assert bar.count == 4 and log.getvalue() == ""


def test_no_final_line_after_an_error(clock, log):
    with pytest.raises(RuntimeError):
        with Progress(4, "failing") as bar:
            bar.update(1)
            raise RuntimeError("boom")
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    monkeypatch.setattr(progress_module.sys, "stderr", stream)
    with Progress(3, "bar", "it") as bar:
        bar.update(3)
    assert bar.bar is not None and bar.bar.n == 3
    assert "bar" in stream.getvalue() and "3/3" in stream.getvalue()
    with Progress(3, "silent", quiet=True) as quiet:
        quiet.update(3)
    assert quiet.bar is None and "silent" not in stream.getvalue()
