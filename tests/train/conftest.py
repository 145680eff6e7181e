"""Trainer tests: one thread (tiny models, 2 shared cores), a tiny corpus, the CLI as a process."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

WORDS = (  # noqa: SIM905
    "the king queen lord lady love death night day sword crown heart good my thy thou art "
    "shall will not and of to in is that with for be his her me you what o come go speak"
).split()


@pytest.fixture(autouse=True)
def _one_thread_float32() -> Iterator[None]:
    """One thread, and float32 whatever other test modules set as the default dtype."""
    before = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_num_threads(before[0])
    torch.set_default_dtype(before[1])


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """About 12k characters of seeded pseudo-verse: speakers, lines, punctuation."""
    rng = random.Random(0)
    lines = []
    while sum(map(len, lines)) < 12_000:
        lines.append(rng.choice(["KING:", "QUEEN:", "LORD:"]))
        for _ in range(rng.randint(1, 3)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 9))]
            lines.append(" ".join(words).capitalize() + rng.choice([",", ".", "!", ";"]))
        lines.append("")
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
