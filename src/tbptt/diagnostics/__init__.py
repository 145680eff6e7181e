"""Tools that help choose k1/k2: suggest lengths from a series' ACF/PACF and periods, measure the
truncation bias against full BPTT, explain the unrolled network, and sweep (k1, k2) grids."""

from tbptt.diagnostics.suggest import BUILTIN_SERIES, Suggestion, load_series, suggest

__all__ = ["BUILTIN_SERIES", "Suggestion", "load_series", "suggest"]
