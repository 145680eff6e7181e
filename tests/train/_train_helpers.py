"""Helpers of the trainer tests: the ``tbptt`` command as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def cli(args: list[str], cwd: Path, **kw: object) -> subprocess.Popen[bytes]:
    """Start ``tbptt ARGS`` as a process (output to files in cwd, never a full pipe)."""
    out = open(cwd / "stdout.txt", "ab")  # noqa: SIM115 - closed by the process's end
    err = open(cwd / "stderr.txt", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "tbptt.cli", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=out,
        stderr=err,
        **kw,  # type: ignore[arg-type]
    )


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``tbptt ARGS`` to its end; returns (exit code, stdout, stderr) of this run."""
    res = subprocess.run(
        [sys.executable, "-m", "tbptt.cli", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return res.returncode, res.stdout, res.stderr
