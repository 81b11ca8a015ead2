"""cosim_np: cosine similarity with Numba and NumPy.

Sliding (sharpened) cosine similarity of signals with kernels, with exact
O(n) windowed norms, and similarity of embeddings.
"""

from .embedding import (
    GreedyMatch,
    cosine_similarity,
    pairwise_cosine,
    set_similarity,
    topk_cosine,
)
from .matches import Matches, find_matches, plot_matches
from .sliding import (
    SlidingCosineGrad,
    sharpen,
    sliding_cosine,
    sliding_cosine_grad,
    windowed_norm,
)
from .weighted import scaled_cosine, scaled_cosine_loss

__version__ = "0.1.0"

__all__ = [
    "sharpen",
    "sliding_cosine",
    "windowed_norm",
    "sliding_cosine_grad",
    "SlidingCosineGrad",
    "find_matches",
    "Matches",
    "plot_matches",
    "cosine_similarity",
    "pairwise_cosine",
    "topk_cosine",
    "set_similarity",
    "GreedyMatch",
    "scaled_cosine",
    "scaled_cosine_loss",
    "__version__",
]
