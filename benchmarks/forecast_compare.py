"""Two cached tbptt variants side by side on one group (not run in CI; runs nothing).

    python benchmarks/forecast_compare.py --group tuning --tags ,-refit
    python benchmarks/forecast_compare.py --group unseen --tags ,-refit --seeds 0,1,2

Each variant is a ``tbptt{tag}`` cache of ``benchmarks/forecast.py`` (``--tbptt-args ...
--tag TAG``; the empty tag: the defaults). The output is one Markdown table: per dataset the
one-step MASE and the horizon MASE relative to seasonal naive (mean over seeds) of each
variant, then the mean one-step MASE, the horizon's geometric mean, the series that lose to
seasonal naive one step ahead, and the mean training seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecast import run_method, score
from forecast_data import GROUPS


def variant(name: str, tag: str, seeds: list[int]) -> dict[str, float]:
    """One variant's mean one-step and horizon MASE and seconds over ``seeds`` on ``name``."""
    rows = [score(name, r) | {"seconds": r["seconds"]} for r in (
        run_method("tbptt", name, s, False, True, (), tag) for s in seeds)]  # fmt: skip
    return {k: float(np.mean([r[k] for r in rows])) for k in ("one_step", "horizon", "seconds")}


def compare(group: str, tags: list[str], seeds: list[int]) -> str:
    """The Markdown table of ``tags`` (cached) on the series of ``group``."""
    names = list(GROUPS[group])
    head = ["dataset", *[f"one-step {t or 'default'}" for t in tags]]
    head += [f"horizon rel. {t or 'default'}" for t in tags]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    got = {t: {n: variant(n, t, seeds) for n in names} for t in tags}
    snaive = {n: run_method("seasonal_naive", n, 0, False, True) for n in names}
    base = {n: score(n, snaive[n]) for n in names}
    for n in names:
        one = [f"{got[t][n]['one_step']:.3f}" for t in tags]
        rel = [f"{got[t][n]['horizon'] / base[n]['horizon']:.3f}" for t in tags]
        lines.append(f"| {n} | " + " | ".join(one + rel) + " |")
    mean = [np.mean([got[t][n]["one_step"] for n in names]) for t in tags]
    geo = [math.exp(np.mean([math.log(got[t][n]["horizon"] / base[n]["horizon"]) for n in names]))
           for t in tags]  # fmt: skip
    lines.append("| **mean / geometric mean** | " + " | ".join(
        [f"**{v:.3f}**" for v in mean] + [f"**{v:.3f}**" for v in geo]) + " |")  # fmt: skip
    for t in tags:
        lost = [n for n in names if got[t][n]["one_step"] >= base[n]["one_step"]]
        secs = np.mean([got[t][n]["seconds"] for n in names])
        lines.append(f"\n{t or 'default'}: loses to seasonal naive one step on {len(lost)} "
                     f"({', '.join(lost) or 'none'}); mean seconds {secs:.1f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--group", choices=sorted(GROUPS), default="tuning")
    p.add_argument("--tags", default=",-refit", help="comma-separated cache tags ('' first)")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args(argv)
    tags = args.tags.split(",")
    print(compare(args.group, tags, [int(s) for s in args.seeds.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
