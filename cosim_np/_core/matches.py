"""The plan of ``find_matches``: its own arguments checked (the sliding
options are planned by :func:`cosim_np._core.sliding.plan_sliding`), the
default exclusion zone, the size of the candidate pool that keeps a bounded
search exact, and the tile of windows scored at a time.  Nothing here
computes on a signal.

The semantics (docs/matches.rst): a window's *key* is its score ``s``
(``sign="positive"``), ``-s`` (``"negative"``) or ``|s|`` (``"both"``), NaN
counting as ``-inf``; candidates are local maxima of the key along the
windows (``key[i] > key[i-1]`` and ``key[i] >= key[i+1]``, a missing
neighbour counting as ``-inf``) with ``key >= threshold``; they are kept
greedily, best key first (ties to the lower index, then the lower kernel),
unless a kept match lies within ``exclusion`` windows, across all kernels;
at most ``k`` per signal row.
"""

import math
import numbers
from collections import namedtuple

import numpy as np

from . import config
from . import validate as v
from .spatial import per_axis

SIGNS = ("both", "positive", "negative")
# the sign codes the CPU kernels read
SIGN_CODES = {"both": 0, "positive": 1, "negative": -1}

MatchPlan = namedtuple("MatchPlan", "k threshold threshold_fn exclusion sign budget pool rows lead_shape")
MatchPlan.__doc__ = """A checked ``find_matches`` call (beside its ``SlidingPlan``).

``k`` (None: no limit) matches per signal row, keys of at least
``threshold`` (a float, ``-inf`` for none) or of the callable
``threshold_fn`` (else None), ``exclusion`` windows on either side,
``sign`` a code of :data:`SIGN_CODES`, ``budget`` bytes of working memory,
``pool`` candidates kept per row while scanning when ``k`` is given,
``rows`` signal rows of leading shape ``lead_shape``."""


def check_k(k):
    """None, or an integer ``>= 0``."""
    if k is None:
        return None
    # (no signal has 2**62 windows: a larger k means the same, and fits int64)
    return min(v.check_positive_int(k, "k", minimum=0), 2**62)


def default_exclusion(m, dilation):
    """Half a window's span: ``((m - 1) * dilation + 1) // 2``."""
    return ((m - 1) * dilation + 1) // 2


def check_exclusion(exclusion, m, dilation):
    """None (the default, :func:`default_exclusion`) or an integer ``>= 0``."""
    if exclusion is None:
        return default_exclusion(m, dilation)
    return v.check_positive_int(exclusion, "exclusion", minimum=0)


def check_threshold(threshold):
    """``(value, function)``: a real number (not NaN) and None, or ``-inf``
    and the callable; ``(-inf, None)`` for None."""
    if threshold is None:
        return -math.inf, None
    if callable(threshold):
        return -math.inf, threshold
    number = _real_or_none(threshold)
    if number is None:
        raise TypeError(
            "threshold must be a real number, a callable that takes the key array and "
            f"returns one, or None; got {v.shown(threshold)}.")
    return v.check_real(number, "threshold", finite=False), None


def _real_or_none(value):
    """``value`` as a real number (a 0-d array's), or None where it is none."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (numbers.Real, np.floating, np.integer)):
        return None
    return value


def threshold_value(value):
    """The number a callable threshold returned, checked."""
    number = _real_or_none(value)
    if number is None:
        raise TypeError(
            f"threshold (a callable) must return one real number; it returned {value!r}.")
    number = float(number)
    if math.isnan(number):
        raise ValueError(
            "threshold (a callable) returned NaN: with NaN keys in the array, use NaN-aware "
            "functions (np.nanmedian, ...).")
    return number


def pool_size(k, nker, exclusion, windows, room=None):
    """Candidates kept per row while scanning for the best ``k``.

    A kept match suppresses the candidates within ``exclusion`` windows of
    it, at most ``exclusion + 1`` per kernel (two local maxima are never
    neighbours), so greedy selection over the best ``k * nker *
    (exclusion + 1)`` candidates keeps ``k`` whenever that many exist, and
    those are the ``k`` it keeps over all candidates (it only consults
    better ones).  The pool is at most ``config.MATCH_POOL``, or ``k`` where
    that is larger, and at most ``room`` (the candidates memory holds;
    ``MATCH_POOL`` by default); a smaller pool is exact too, at the cost of a
    rescan where it keeps fewer than ``k`` (see ``_cpu.matches``)."""
    whole = nker * windows
    need = k * nker * (min(exclusion, windows) + 1)
    room = config.MATCH_POOL if room is None else room
    return int(max(1, min(whole, room, max(k, min(need, config.MATCH_POOL)))))


def first_per_row(rows, count):
    """Of candidates sorted by row (then best first), which are among the
    first ``count`` of their row (a row's pool)."""
    return np.arange(rows.size) - np.searchsorted(rows, rows) < count


def plan_matches(k, threshold, exclusion, sign, max_memory, *, nker, m, dilation, nwin, lead):
    """Check ``find_matches``'s own arguments for ``nker`` kernels of ``m``
    taps spaced ``dilation`` apart, ``nwin`` windows per row and signal rows
    of leading shape ``lead``; returns a :class:`MatchPlan`."""
    kk = check_k(k)
    value, function = check_threshold(threshold)
    v.check_choice(sign, "sign", SIGNS)
    excl = check_exclusion(exclusion, m, dilation)
    budget = v.check_memory(max_memory, "max_memory", config.DEFAULT_MAX_MEMORY)
    if kk is not None and kk >= -(-nwin // (min(excl, nwin) + 1)):
        # no row holds k matches (kept ones lie more than exclusion apart):
        # every match, as without k (whose candidates are listed a tile at a
        # time, where pools of k each took memory k times the threads)
        kk = None
    pool = 0 if kk is None else pool_size(kk, nker, excl, nwin)
    return MatchPlan(kk, value, function, excl, SIGN_CODES[sign], budget, pool, math.prod(lead),
                     tuple(lead))


def lead_shape(shape, ax, channel_axis):
    """The leading (batch) shape of a signal: every axis but the sliding
    one and the channel axis."""
    return tuple(size for axis, size in enumerate(shape) if axis != ax and axis != channel_axis)


def score_layout(signal_ndim, kernel_ndim, axis):
    """``(ax, channel_axis, is_bank)`` of ``sliding_cosine``'s result for a
    signal and kernel of these dimensions (checked by the sliding call)."""
    ax = v.check_axis(axis, signal_ndim)
    return ax, (ax - 1 if kernel_ndim == 3 else None), kernel_ndim == 2


def spatial_pool_size(k, nker, exclusion, nout):
    """Candidates kept per batch index while scanning for the best ``k``
    over several axes (``exclusion`` and ``nout`` one per axis).

    A kept match suppresses the candidates within its box, at most half of
    the box's windows per kernel (no two local maxima of a kernel are
    neighbours along an axis), so greedy selection over the best ``k *
    (that + 1)`` keeps ``k`` whenever that many exist, and those it keeps
    over all candidates (it only consults better ones)."""
    box = math.prod(min(2 * e + 1, n) for e, n in zip(exclusion, nout))
    return max(1, k * (nker * -(-box // 2) + 1))


def check_exclusions(exclusion, count):
    """None (the default), or ``exclusion`` for ``count`` sliding axes as a
    tuple of integers ``>= 0``."""
    if exclusion is None:
        return None
    return per_axis(exclusion, "exclusion", count,
                    lambda value, name: v.check_positive_int(value, name, minimum=0))


def plan_spatial_matches(k, threshold, exclusion, sign, max_memory, *, m, dilation, lead, nker,
                         nout):
    """:func:`plan_matches` for several sliding axes: ``m``, ``dilation`` and
    ``nout`` (windows) one per axis, ``exclusion`` an int (every axis) or one
    per axis, the default half of each axis's span; returns a
    :class:`MatchPlan` whose ``exclusion`` is a tuple and ``pool`` that of
    :func:`spatial_pool_size`."""
    kk = check_k(k)
    value, function = check_threshold(threshold)
    v.check_choice(sign, "sign", SIGNS)
    excl = check_exclusions(exclusion, len(m))
    if excl is None:
        excl = tuple(default_exclusion(mm, dd) for mm, dd in zip(m, dilation))
    budget = v.check_memory(max_memory, "max_memory", config.DEFAULT_MAX_MEMORY)
    pool = 0 if kk is None else spatial_pool_size(kk, nker, excl, nout)
    return MatchPlan(kk, value, function, excl, SIGN_CODES[sign], budget, pool, math.prod(lead),
                     tuple(lead))
