"""Progress display: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75.3 -> '1:15'``, ``3725 -> '1:02:05'``."""
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _speed(tokens_per_s: float) -> str:
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.2f}M tok/s"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k tok/s"
    return f"{tokens_per_s:.0f} tok/s"


class Progress:
    """Shows updates done, the live training loss (and the task's headline metric) and speed.

    ``enabled=None`` picks a rich bar when ``stream`` is a terminal and ``rich`` is installed,
    else one plain line per ``update(..., log=True)``; ``False`` prints nothing but messages.
    """

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = enabled is False
        self._bar: Any = None
        self._task: Any = None
        use_rich = enabled is True or (enabled is None and self.stream.isatty())
        if use_rich and not self.quiet:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                pass
            else:
                self._bar = RichProgress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=Console(file=self.stream),
                    transient=False,
                )
        self._total_updates: int | None = None
        self._total_seconds: float | None = None
        self._last_line = 0.0

    @property
    def rich(self) -> bool:
        return self._bar is not None

    def start(self, total_updates: int | None, total_seconds: float | None, done: int) -> None:
        self._total_updates, self._total_seconds = total_updates, total_seconds
        if self._bar is not None:
            self._bar.start()
            total = total_updates if total_updates else None
            self._task = self._bar.add_task("train", total=total, completed=done, info="")

    def update(self, updates: int, elapsed: float, info: dict[str, float], log: bool) -> None:
        """Refresh the bar (every call) or print a line (when ``log``)."""
        text = self._info(info)
        if self._bar is not None:
            completed: float = updates
            total: float | None = self._total_updates
            if total is None and self._total_seconds:
                # a time budget: show the fraction of time used against the update count
                frac = min(1.0, elapsed / self._total_seconds)
                total = max(updates, int(updates / frac)) if frac > 0 else None
            self._bar.update(self._task, completed=completed, total=total, info=text)
        elif log and not self.quiet:
            of = f"/{self._total_updates}" if self._total_updates else ""
            budget = f"/{format_duration(self._total_seconds)}" if self._total_seconds else ""
            print(
                f"update {updates}{of}  {text}  {format_duration(elapsed)}{budget}",
                file=self.stream,
                flush=True,
            )

    def message(self, text: str) -> None:
        """A line above the bar (or plainly)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    @staticmethod
    def _info(info: dict[str, float]) -> str:
        parts = []
        for key in ("loss", "bpc", "ppl", "rmse"):
            if key in info and key != "ppl":
                parts.append(f"{key} {info[key]:.4g}")
        if "val" in info:
            parts.append(f"val {info['val']:.4g}")
        if "tokens_per_s" in info:
            parts.append(_speed(info["tokens_per_s"]))
        if info.get("skipped"):
            parts.append(f"skipped {int(info['skipped'])}")
        return "  ".join(parts)
