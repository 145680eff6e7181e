"""Tools that help choose k1/k2: suggest lengths from a series' ACF/PACF and periods, measure the
truncation bias against full BPTT, explain the unrolled network, and sweep (k1, k2) grids."""

from tbptt.diagnostics.bias import BiasReport, gradient_reach, summed_gradient, truncation_bias
from tbptt.diagnostics.explain import Explanation, UpdatePlan, explain
from tbptt.diagnostics.objective import trainer_objective
from tbptt.diagnostics.suggest import BUILTIN_SERIES, Suggestion, load_series, suggest
from tbptt.diagnostics.sweep import SweepResult, load_sweep, sweep

__all__ = [
    "BUILTIN_SERIES",
    "BiasReport",
    "Explanation",
    "Suggestion",
    "SweepResult",
    "UpdatePlan",
    "explain",
    "gradient_reach",
    "load_series",
    "load_sweep",
    "suggest",
    "summed_gradient",
    "sweep",
    "trainer_objective",
    "truncation_bias",
]
