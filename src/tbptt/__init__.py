"""tbptt: exact truncated backpropagation through time for PyTorch recurrent models.

The public surface: :class:`Engine` (the core), the truncation rules :class:`TBPTT` and
:class:`BPTT`, :class:`Chunk` (the data unit), :mod:`tbptt.data` (splitting and stream batching),
:mod:`tbptt.state` and :mod:`tbptt.losses`.
"""

from tbptt import data, losses, state
from tbptt.chunk import Chunk
from tbptt.engine import Engine, Update
from tbptt.truncation import BPTT, TBPTT, TruncationRule

__all__ = [
    "BPTT",
    "TBPTT",
    "Chunk",
    "Engine",
    "TruncationRule",
    "Update",
    "data",
    "losses",
    "state",
]
__version__ = "0.1.0"
