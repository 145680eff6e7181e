"""Tools that help choose k1/k2: suggest lengths from a series' ACF/PACF and periods, measure the
truncation bias against full BPTT, explain the unrolled network, and sweep (k1, k2) grids."""

from tbptt.diagnostics.bias import BiasReport, gradient_reach, summed_gradient, truncation_bias
from tbptt.diagnostics.explain import Explanation, UpdatePlan, explain
from tbptt.diagnostics.suggest import BUILTIN_SERIES, Suggestion, load_series, suggest

__all__ = [
    "BUILTIN_SERIES",
    "BiasReport",
    "Explanation",
    "Suggestion",
    "UpdatePlan",
    "explain",
    "gradient_reach",
    "load_series",
    "suggest",
    "summed_gradient",
    "truncation_bias",
]
