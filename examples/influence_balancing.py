"""Influence balancing: where truncated BPTT fails and overlapping windows and ARTBP do not.

The task (Tallec & Ollivier 2017, "Unbiased Online Recurrent Optimization"; the setting of
google-research's persistent_es ``influence_balancing``): a 23-dim linear system
``s_t = A s_{t-1} + theta u`` (``tbptt.tasks.InfluenceBalancing``) whose parameter pushes
``s[0]`` up within 10 steps and down in the long run; the loss ``1/2 (s_t[0] - 1)^2`` is 0 at
``theta* = -1/6``. A gradient truncated too early has the wrong sign. Everything runs through
``tbptt.Engine`` in float64, with the loss ``tbptt.tasks.half_squared_error`` (with the 1/2, so
the learning rates are the papers').

- F1 (the persistent_es experiment): one SGD update (lr 1e-4) per unroll of K steps, the loss at
  the unroll's last step only (the mask), 3000 updates. The state *carries* from one unroll to
  the next (an online stream, as in persistent_es; restarting each unroll at s0 gives a different
  pattern: K = 1 then decays towards 0 and K = 10 converges to 0). Expected: K = 1 ends far from
  theta* (about 3.26), K = 10 diverges, K = 100 reaches theta*.
- F2 (UORO / ARTBP, online): the loss at every step, reduction="sum", SGD lr 1e-5, 300,000 steps.
  Expected: chunked TBPTT(10, 10) and TBPTT(100, 100) fail; overlapping TBPTT(10, 100),
  TBPTT(1, 100) and ARTBP with constant c in {0.01, 0.03, 0.1} (3 seeds) reach theta*.

Run it all (the TBPTT(1, 100) run takes minutes: one update per step over a 100-step window)::

    python examples/influence_balancing.py --jobs 8 [--json results.json]
    python examples/influence_balancing.py --quick    # the short version tests/ runs

The short version keeps the verdicts with fewer steps and larger learning rates (ARTBP with
c = 0.1 has the largest variance, so it keeps lr 1e-5 and runs 30,000 steps).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import time
from dataclasses import asdict, dataclass

import torch

from tbptt import ARTBP, TBPTT, Engine, TruncationRule
from tbptt.tasks import InfluenceBalancing, half_squared_error

THETA0 = 0.5
THETA_STAR = -1.0 / 6.0
DIVERGED = 100.0  # |theta| beyond this counts as diverged (theta* = -1/6)


@dataclass(frozen=True)
class Job:
    experiment: str  # "F1" or "F2"
    rule: tuple  # ("K", k) for F1; ("TBPTT", k1, k2) or ("ARTBP", c, seed) for F2
    lr: float
    length: int  # F1: updates; F2: stream steps
    expect: str  # "converges" or "fails"

    @property
    def setting(self) -> str:
        kind, *args = self.rule
        if kind == "K":
            return f"K={args[0]}"
        if kind == "TBPTT":
            return f"TBPTT({args[0]}, {args[1]})"
        return f"ARTBP(c={args[0]}) seed {args[1]}"


@dataclass
class Result:
    experiment: str
    setting: str
    lr: float
    steps: int  # stream steps run
    updates: int
    theta: float  # final theta (the last finite one if it diverged)
    diverged: bool
    seconds: float
    expect: str

    @property
    def outcome(self) -> str:
        """converges: within 1% of theta*; fails: diverged or ended farther than it started."""
        if not self.diverged and abs(self.theta - THETA_STAR) <= 0.01 * abs(THETA_STAR):
            return "converges"
        if self.diverged or abs(self.theta - THETA_STAR) > abs(THETA0 - THETA_STAR):
            return "fails"
        return "undecided"


def make_rule(rule: tuple) -> TruncationRule:
    kind, *args = rule
    if kind == "TBPTT":
        return TBPTT(args[0], args[1])
    if kind == "ARTBP":
        return ARTBP(args[0], seed=args[1])
    raise ValueError(f"rule must be ('TBPTT', k1, k2) or ('ARTBP', c, seed), got {rule!r}.")


def run(job: Job, piece: int = 1000) -> Result:
    """Train theta from 0.5 with plain SGD through tbptt.Engine, as the job says."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: more threads only add overhead (and stalls under load)
    try:
        return _run(job, piece)
    finally:
        torch.set_num_threads(threads)


def _run(job: Job, piece: int) -> Result:
    model = InfluenceBalancing(theta=THETA0)  # float64
    opt = torch.optim.SGD([model.theta], lr=job.lr)
    if job.experiment == "F1":
        k = job.rule[1]
        rule: TruncationRule = TBPTT(k)
        engine = Engine(model, half_squared_error, rule, init_state=model.initial_state)
        piece = k * max(1, piece // k)  # whole unrolls per piece
        total = k * job.length
        mask = torch.zeros(1, piece, dtype=torch.bool)
        mask[:, k - 1 :: k] = True  # the loss at the last step of each unroll
    else:
        rule = make_rule(job.rule)
        artbp = isinstance(rule, ARTBP)
        engine = Engine(
            model,
            half_squared_error,
            rule,
            path="step" if artbp else "chunk",  # ARTBP splits every step anyway
            mode="recompute",  # for k2 > k1: re-run the window (fewer autograd calls here)
            reduction="sum",
            init_state=model.initial_state,
        )
        total, mask = job.length, None
    x, y = model.stream(piece)  # (1, piece, 1): x_t = 1, target 1
    start = time.perf_counter()
    steps = updates = 0
    theta, diverged = THETA0, False
    while steps < total and not diverged:
        n = min(piece, total - steps)
        m = None if mask is None else mask[:, :n]
        for _ in engine.feed(x[:, :n], y[:, :n], mask=m):
            opt.step()
            updates += 1
            value = model.theta.item()
            if not math.isfinite(value) or abs(value) > DIVERGED:
                diverged = True
                break
            theta = value
        steps += n
    return Result(
        job.experiment,
        job.setting,
        job.lr,
        steps,
        updates,
        theta,
        diverged,
        time.perf_counter() - start,
        job.expect,
    )


def full_jobs(seeds: int = 3) -> list[Job]:
    """The experiments as stated (see the module docstring)."""
    f1 = [
        Job("F1", ("K", k), 1e-4, 3000, "converges" if k == 100 else "fails") for k in (1, 10, 100)
    ]
    f2 = [
        Job("F2", ("TBPTT", k1, k2), 1e-5, 300_000, "fails" if k1 == k2 else "converges")
        for k1, k2 in ((10, 10), (100, 100), (10, 100), (1, 100))
    ]
    f2 += [
        Job("F2", ("ARTBP", c, seed), 1e-5, 300_000, "converges")
        for c in (0.01, 0.03, 0.1)
        for seed in range(seeds)
    ]
    return f1 + f2


def quick_jobs() -> list[Job]:
    """The same verdicts in seconds: fewer steps, larger learning rates (tests/ runs these)."""
    f1 = [
        Job("F1", ("K", 1), 1e-4, 3000, "fails"),  # as stated: theta -> 3.26
        Job("F1", ("K", 10), 1e-4, 3000, "fails"),  # diverges after ~1,300 updates
        Job("F1", ("K", 100), 1e-3, 300, "converges"),  # 10x the lr, 1/10 of the updates
    ]
    f2 = [
        Job("F2", ("TBPTT", k1, k2), 1e-4, 3000, "fails" if k1 == k2 else "converges")
        for k1, k2 in ((10, 10), (100, 100), (10, 100), (1, 100))
    ]
    f2 += [
        Job("F2", ("ARTBP", 0.01, 0), 3e-5, 10_000, "converges"),
        Job("F2", ("ARTBP", 0.03, 0), 3e-5, 10_000, "converges"),
        Job("F2", ("ARTBP", 0.1, 0), 1e-5, 30_000, "converges"),
    ]
    return f1 + f2


def run_all(jobs: list[Job], workers: int = 1) -> list[Result]:
    if workers <= 1:
        return [run(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(run, jobs))


def table(results: list[Result]) -> str:
    head = (
        f"{'exp':<4}{'setting':<22}{'lr':>7}{'steps':>9}{'updates':>9}{'final theta':>13}"
        f"{'|theta-theta*|':>16}  {'outcome':<10}{'expected':<10}{'time':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        gap = abs(r.theta - THETA_STAR) / abs(THETA_STAR)
        theta = "diverged" if r.diverged else f"{r.theta:.5f}"
        rel = "-" if r.diverged else f"{100 * gap:.2f}%"
        mark = "" if r.outcome == r.expect else "  <-- not as expected"
        lines.append(
            f"{r.experiment:<4}{r.setting:<22}{r.lr:>7.0e}{r.steps:>9}{r.updates:>9}{theta:>13}"
            f"{rel:>16}  {r.outcome:<10}{r.expect:<10}{r.seconds:>7.1f}s{mark}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short version (seconds)")
    parser.add_argument("--seeds", type=int, default=3, help="ARTBP seeds per c (full run)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    jobs = quick_jobs() if args.quick else full_jobs(args.seeds)
    results = run_all(jobs, args.jobs)
    print(
        f"theta0 = {THETA0}, theta* = {THETA_STAR:.6f}; outcome 'converges' = within 1% of theta*"
    )
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "outcome": r.outcome} for r in results], f, indent=1)


if __name__ == "__main__":
    main()
