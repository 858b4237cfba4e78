"""Progress of work over many files: files done, chunks, bytes, rate, ETA.

On a terminal a tqdm bar that fits the terminal's width and redraws in place; anywhere else
(a log file, a CI job) a plain line every ``interval`` seconds and then one at the end, never
one per file (and none for a run shorter than ``interval``). Disabled, it costs nothing.
"""

from __future__ import annotations

import sys
import time

from ..sizes import size_text


class Progress:
    """Count files (with their chunks and bytes) as they finish.

    Parameters
    ----------
    total : int
        Files to do.
    stream : file, optional
        Where to write (default ``sys.stderr``).
    enabled : bool
        False: print nothing.
    interval : float
        Seconds between two plain lines when ``stream`` is not a terminal.
    what : str
        The noun of the count ("files").
    """

    def __init__(
        self,
        total: int,
        stream=None,
        *,
        enabled: bool = True,
        interval: float = 5.0,
        what: str = "files",
    ) -> None:
        self.total = total
        self.done = 0
        self.chunks = 0
        self.nbytes = 0
        self.what = what
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.final = True  # a plain line when the last file is done, too
        self.printed = False  # a plain line was written (off a terminal)
        self.bar = None
        if enabled and _isatty(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit=what.removesuffix("s"),
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.2,
                smoothing=0.05,
                leave=True,
            )

    def step(self, message: str = "", chunks: int = 0, nbytes: int = 0, n: int = 1) -> None:
        self.done += n
        self.chunks += chunks
        self.nbytes += nbytes
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"{self.chunks} chunks, {size_text(self.nbytes)}", refresh=False
            )
            self.bar.update(n)
            return
        now = time.monotonic()
        # the last line only closes a log of earlier ones: a run shorter than the interval
        # says what it did on stdout (a line per file) and leaves stderr to its errors
        last = self.done == self.total and self.final and self.printed
        if now - self.last >= self.interval or last:
            self.last = now
            self.printed = True
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def pace(self) -> tuple[float, float, float]:
        """(seconds since the start, items done a second, seconds left at that rate)."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return elapsed, rate, (self.total - self.done) / rate if rate else 0.0

    def line(self) -> str:
        """``[done/total] chunks, bytes indexed, files/s, bytes/s, ETA``."""
        elapsed, rate, eta = self.pace()
        speed = size_text(self.nbytes / elapsed if elapsed > 0 else 0)
        return (
            f"[{self.done}/{self.total}] {self.chunks} chunks, {size_text(self.nbytes)} "
            f"indexed, {rate:.1f} {self.what}/s, {speed}/s, ETA {eta:.0f}s"
        )

    def write(self, text: str) -> None:
        """A line of output on the same stream, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done and self.done != self.total:
            self.stream.write(self.line() + "\n")  # interrupted: say where it stopped
            self.stream.flush()


class Checking(Progress):
    """Progress of ``catalog verify``: entries checked and problems found; away from a
    terminal a line every ``interval`` seconds only while it runs (the summary ends it)."""

    def __init__(self, total: int, stream=None, *, enabled: bool = True, interval: float = 5.0):
        super().__init__(total, stream, enabled=enabled, interval=interval, what="entries")
        self.final = False
        self.problems = 0

    def step(self, message: str = "", chunks: int = 0, nbytes: int = 0, n: int = 1) -> None:
        if self.bar is not None:
            self.done += n
            self.bar.set_postfix_str(f"{self.problems} problems", refresh=False)
            self.bar.update(n)
            return
        super().step(n=n)

    def line(self) -> str:
        _, rate, eta = self.pace()
        return (
            f"verify: {self.done:,}/{self.total:,} entries checked, {self.problems} problems so "
            f"far, {rate:.0f} entries/s, ETA {eta:.0f}s"
        )


def on_terminal(total: int, what: str = "files") -> Progress:
    """A bar for work over many files on an interactive terminal; silent anywhere else
    (``combine``, ``catalog reduce`` and ``verify`` print their result, not a log)."""
    return Progress(total, enabled=total > 1 and _isatty(sys.stderr), what=what)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
