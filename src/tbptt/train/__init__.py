"""Training on top of the engine: :func:`fit`, :func:`evaluate`, :class:`Trainer`, checkpoints,
metrics and run reports. The engine stays usable in your own loop; this is a convenience.

See ``docs/cli.md`` for the ``tbptt`` command built on it.
"""

from tbptt.train.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    latest_checkpoint,
    load_checkpoint,
)
from tbptt.train.loop import (
    Callback,
    Counters,
    FitResult,
    NonFiniteError,
    Trainer,
    TrainingInterrupted,
    evaluate,
    fit,
    resolve_device,
)
from tbptt.train.metrics import Metrics, MetricsLog, SeriesMetrics, TokenMetrics

__all__ = [
    "Callback",
    "CheckpointError",
    "CheckpointWriteError",
    "Counters",
    "FitResult",
    "Metrics",
    "MetricsLog",
    "NonFiniteError",
    "SeriesMetrics",
    "TokenMetrics",
    "Trainer",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "load_checkpoint",
    "resolve_device",
]
