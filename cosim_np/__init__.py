"""cosim_np: cosine similarity with Numba and NumPy.

Sliding (sharpened) cosine similarity of signals with kernels, with exact
O(n) windowed norms, and similarity of embeddings.
"""

from .sliding import sharpen, sliding_cosine, windowed_norm

__version__ = "0.1.0"

__all__ = ["sharpen", "sliding_cosine", "windowed_norm", "__version__"]
