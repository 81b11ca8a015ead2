"""The CUDA backend: the public functions' GPU implementations.

Imported only by :func:`cosim_np._backend.cuda_impl`, that is when an input
lives on the GPU or ``backend="cuda"`` is asked for; with it comes
``numba.cuda`` (through :mod:`cosim_np._cuda.kernels` and
:mod:`cosim_np._cuda.device`, the only modules that import it).  Each
function validates and plans with the core (``_core``), lays out its
launches (offsets, tiles, geometry from :data:`settings`) and runs the
kernels on the stream of its input's producer.
"""

from .arrays import settings
from .embedding import (
    cosine_similarity,
    pairwise_cosine,
    scaled_cosine,
    scaled_cosine_loss,
    set_similarity,
    topk_cosine,
)
from .sliding import sharpen, sliding_cosine, sliding_cosine_grad, windowed_norm

__all__ = ["settings", "cosine_similarity", "pairwise_cosine", "topk_cosine", "set_similarity",
           "scaled_cosine", "scaled_cosine_loss", "sharpen", "sliding_cosine",
           "sliding_cosine_grad", "windowed_norm"]
