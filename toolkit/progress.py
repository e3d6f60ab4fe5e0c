"""Progress of long loops on stderr: a tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress with a total and a time estimate on stderr.

    A ``tqdm`` bar when stderr is a terminal; otherwise (a log file) one plain line at most every
    ``every`` seconds and one at the end, never ``\\r`` lines. ``quiet`` prints nothing.

    Args:
        total: Expected number of units (an estimate is fine: ``~`` marks it).
        desc: What is counted, e.g. the checkpoint's name.
        unit: The unit, e.g. ``HVP`` or ``point``.
        quiet: Print nothing.
        every: Seconds between plain lines.
        estimate: ``total`` is an upper estimate (Lanczos may stop earlier).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        quiet: bool = False,
        every: float = 10.0,
        estimate: bool = False,
    ) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.count, self.start, self.estimate = 0, time.monotonic(), estimate
        self.last = self.start
        self.bar, self.quiet = None, quiet
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(exc[0] is None)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last, elapsed = time.monotonic(), time.monotonic() - self.start
        total = f"{'~' if self.estimate else ''}{self.total}" if self.total else "?"
        text = f"{self.desc}: {self.count}/{total} {self.unit}, {elapsed:.0f} s"
        if self.total and 0 < self.count < self.total:
            text += f", ~{elapsed * (self.total - self.count) / self.count:.0f} s left"
        print(text, file=sys.stderr, flush=True)

    def close(self, done: bool = True) -> None:
        """End the bar; a final plain line when not on a terminal."""
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet and done:
            self._line()
