"""tbptt: exact truncated backpropagation through time for PyTorch recurrent models.

The public surface: :class:`Engine` (the core), the truncation rules :class:`TBPTT` and
:class:`BPTT`, :class:`Chunk` (the data unit), :mod:`tbptt.data` (splitting and stream batching),
:mod:`tbptt.state` and :mod:`tbptt.losses`. Estimators: :class:`ARTBP` (unbiased) and
:class:`VariableLength` (AWD-LSTM) with :func:`scaled_lr`; synthetic long-dependency tasks in
:mod:`tbptt.tasks`. Exact online gradients for minGRU/LRU layers: :class:`Online`
(:mod:`tbptt.online`).
"""

from tbptt import data, losses, state, tasks
from tbptt.api import load
from tbptt.chunk import Chunk
from tbptt.engine import Engine, Update
from tbptt.online import Online
from tbptt.optim import scaled_lr
from tbptt.truncation import ARTBP, BPTT, TBPTT, TruncationRule, VariableLength

__all__ = [
    "ARTBP",
    "BPTT",
    "TBPTT",
    "Chunk",
    "Engine",
    "Online",
    "TruncationRule",
    "Update",
    "VariableLength",
    "data",
    "load",
    "losses",
    "scaled_lr",
    "state",
    "tasks",
]
__version__ = "0.1.0"
