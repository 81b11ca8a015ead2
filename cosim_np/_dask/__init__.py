"""The Dask backend: the sliding functions and the matrix functions of the
embeddings on ``dask.array`` inputs, lazily.

Imported only by :func:`cosim_np._backend.dask_impl`, that is when an input
is a Dask array; the only place that imports ``dask``.  Each function is
planned by the core (``_core``) on the Dask array's shape and dtype, so bad
arguments raise at once, and builds a graph whose every task runs the
in-memory function on one block of the signal: that function is handed in by
the public module (``block_function``), so this package imports neither a
public module nor another backend.
"""

from .embedding import cosine_similarity, pairwise_cosine, topk_cosine
from .matches import candidates, score_tiles
from .sliding import sharpen, sliding_cosine, windowed_norm

__all__ = ["cosine_similarity", "pairwise_cosine", "topk_cosine", "candidates", "score_tiles", "sharpen",
           "sliding_cosine", "windowed_norm"]
