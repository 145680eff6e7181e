"""tbptt: exact truncated backpropagation through time for PyTorch recurrent models."""

from tbptt.chunk import Chunk

__all__ = ["Chunk"]
__version__ = "0.1.0"
