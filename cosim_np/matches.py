"""Where a kernel matches: greedy best-first peaks of the sliding cosine,
with an exclusion zone, over signals, kernel banks and signal rows.

``find_matches`` validates and plans in the core (``_core.sliding`` for
the sliding options, ``_core.matches`` for its own) and dispatches to
``_cpu.matches``; for device arrays the scores come from the CUDA
``sliding_cosine`` and are selected on the host.
"""

import functools

import numpy as np

from . import _backend
from . import sliding as _sliding
from ._core import matches as plans
from ._core import sliding as sliding_plans
from ._core import spatial as spatial_plans
from ._core import validate as v
from ._cpu import drivers, spatial_matches
from ._cpu import matches as cpu

__all__ = ["find_matches", "Matches", "plot_matches"]


class Matches:
    """The matches found by :func:`find_matches`, best first.

    Attributes
    ----------
    index : numpy.ndarray of int64, shape (n,) or (n, r)
        Position of each match in ``sliding_cosine``'s output for the mode
        used (for ``mode='valid'``, the first sample of the window); with
        ``r`` sliding axes (``axis`` a tuple), one column per axis, in the
        order of ``axis``.
    score : numpy.ndarray, shape (n,)
        The signed (sharpened) cosine of each match, in the result dtype of
        :func:`sliding_cosine`.
    kernel : numpy.ndarray of int64, shape (n,)
        Which kernel of a bank (or output channel of a multi-channel
        kernel) matched; 0 for a single kernel.
    batch : numpy.ndarray of int64, shape (n, n_leading_axes)
        The leading index of each match (the signal's axes other than the
        sliding axis and, for multi-channel kernels, the channel axis); no
        columns for a 1-d signal.
    exclusion : int or tuple of int
        The exclusion zone used, in windows (one per sliding axis with
        several).
    threshold : float or None
        The threshold given as a number, else None.
    coords : dict of numpy.ndarray
        For an ``xarray.DataArray`` signal, the coordinate values of each
        match: those of the sliding dim at ``index`` (not for ``mode='full'``,
        whose windows start before the signal) and those of the leading
        dims at ``batch``, by coordinate name: coordinates of one dim only (a
        coordinate over several dims, such as 2-d ``lat``/``lon`` of a
        curvilinear grid, is left out: read it at ``index`` and ``batch``).
        Empty otherwise.

    The arrays are sorted by key (``|score|`` for ``sign='both'``, ``score``
    or ``-score`` otherwise), best first; ties go to the lower batch index,
    then the lower ``index``, then the lower ``kernel``. ``len(matches)`` is
    the number of matches; iterating gives ``(index, score, kernel, batch)``
    tuples. Two results are equal (``==``) where every array, ``coords``
    included, holds the same values and dtypes, and ``exclusion`` and
    ``threshold`` are the same.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import find_matches
    >>> signal = np.array([0, 1, 2, 3, 0, -1, -2, -3, 0, 0.2, 0.4, 0.6, 0, 3, 2, 1, 0.])
    >>> found = find_matches(signal, [1, 2, 3], threshold=0.5, sharpness=9)
    >>> found
    Matches(3 matches, exclusion=1, threshold=0.5)
      index    score  kernel
          1   1.0000       0
          5  -1.0000       0
          9   1.0000       0
    >>> len(found), found.index, found.score
    (3, array([1, 5, 9]), array([ 1., -1.,  1.]))
    >>> [(int(i), float(s)) for i, s, _, _ in found]
    [(1, 1.0), (5, -1.0), (9, 1.0)]
    """

    __hash__ = None  # (mutable arrays: equal by value, so not hashable)

    def __eq__(self, other):
        if not isinstance(other, Matches):
            return NotImplemented

        def same(a, b):
            a, b = np.asarray(a), np.asarray(b)
            return a.dtype == b.dtype and a.shape == b.shape and bool(
                np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM"))

        return (self.exclusion == other.exclusion and self.threshold == other.threshold
                and all(same(getattr(self, name), getattr(other, name))
                        for name in ("index", "score", "kernel", "batch"))
                and self.coords.keys() == other.coords.keys()
                and all(same(self.coords[name], other.coords[name]) for name in self.coords))

    def __init__(self, index, score, kernel, batch, *, exclusion=0, threshold=None, coords=None):
        # (arrays of any array-like, their lengths checked: lists gave an
        # AttributeError at the first use, as did arrays of other lengths)
        self.score = np.asarray(score)
        count = self.score.shape[0] if self.score.ndim == 1 else -1
        self.index, self.kernel, self.batch = (
            _positions(value, name) for value, name in ((index, "index"), (kernel, "kernel"),
                                                        (batch, "batch")))
        if count == 0 and self.batch.size == 0:
            self.batch = self.batch.reshape(0, self.batch.shape[1] if self.batch.ndim == 2 else 0)
        for name, value, ndims in (("score", self.score, (1,)), ("index", self.index, (1, 2)),
                                   ("kernel", self.kernel, (1,)), ("batch", self.batch, (2,))):
            if value.ndim not in ndims or value.shape[0] != count:
                raise ValueError(
                    f"Matches needs score of shape (n,), index of (n,) or (n, r), kernel of "
                    f"(n,) and batch of (n, n_leading_axes); got {name} of shape {value.shape}"
                    f"{f' for n = {count}' if count >= 0 else ''}.")
        self.exclusion = exclusion
        self.threshold = threshold
        self.coords = {} if coords is None else dict(coords)

    def __len__(self):
        return int(self.score.size)


    def __iter__(self):
        for i in range(len(self)):
            yield (self._position(i), self.score[i], int(self.kernel[i]),
                   tuple(int(b) for b in self.batch[i]))

    def _position(self, i):
        """Match ``i``'s index: an int, or a tuple with several sliding axes."""
        if self.index.ndim == 2:
            return tuple(int(j) for j in self.index[i])
        return int(self.index[i])

    def __repr__(self):
        n = len(self)
        head = f"Matches({n} match{'es' if n != 1 else ''}, exclusion={self.exclusion}"
        if self.threshold is not None:
            head += f", threshold={self.threshold:.6g}"
        head += ")"
        if n == 0:
            return head
        lead = self.batch.shape[1]
        columns = ["index", "score", "kernel"] + (["batch"] if lead else [])
        rows = []
        shown = list(range(n)) if n <= 10 else list(range(5)) + list(range(n - 3, n))
        for i in shown:
            row = [str(self._position(i)), f"{float(self.score[i]):.4f}", str(int(self.kernel[i]))]
            if lead:
                row.append(str(tuple(int(b) for b in self.batch[i])))
            rows.append(row)
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(columns)]
        lines = [head, "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        for position, (i, row) in enumerate(zip(shown, rows)):
            if n > 10 and position == 5:
                lines.append("  " + "...".rjust(widths[0]))
            lines.append("  " + "  ".join(value.rjust(w) for value, w in zip(row, widths)))
        return "\n".join(lines)

    def to_pandas(self):
        """The matches as a table (needs pandas).

        Returns
        -------
        pandas.DataFrame
            One row per match, best first: columns ``index`` (``index0``,
            ``index1``, ... with several sliding axes), ``score``,
            ``kernel``, for signals with leading axes ``batch0``,
            ``batch1``, ..., and the ``coords`` of a DataArray's matches,
            by name (a coordinate named like one of the other columns with
            ``_coord`` appended: a dim ``index``'s values beside the
            positions).

        Raises
        ------
        ImportError
            Without pandas.

        Examples
        --------
        >>> import numpy as np
        >>> from cosim_np import find_matches
        >>> signals = np.array([[0, 1, 2, 3, 0, 0.], [0, 0, -1, -2, -3, 0]])
        >>> find_matches(signals, [1, 2, 3], k=1).to_pandas()
           index  score  kernel  batch0
        0      1    1.0       0       0
        1      2   -1.0       0       1
        """
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Matches.to_pandas needs pandas, which is not installed; install it with "
                "'pip install pandas', or use the arrays index, score, kernel and batch."
            ) from None
        if self.index.ndim == 2:  # several sliding axes: a column per axis
            columns = {f"index{a}": self.index[:, a] for a in range(self.index.shape[1])}
        else:
            columns = {"index": self.index}
        columns.update(score=self.score, kernel=self.kernel)
        for j in range(self.batch.shape[1]):
            columns[f"batch{j}"] = self.batch[:, j]
        for name, values in self.coords.items():
            while name in columns:
                name = f"{name}_coord"
            columns[name] = values
        return pandas.DataFrame(columns)


def _positions(value, name):
    """``Matches``' ``index``, ``kernel`` or ``batch`` as int64, as
    ``find_matches`` gives them (lists, and an empty list, were float64, and
    then never equal to the result they were built from)."""
    array = np.asarray(value)
    if array.dtype.kind in "iub" or array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    raise TypeError(f"Matches needs whole numbers in {name}; got {array.dtype} values"
                    f"{' ' + str(array.ravel()[:3]) if array.size else ''}.")


@_backend.documented
def find_matches(
    signal,
    kernel,
    *,
    k=None,
    threshold=None,
    exclusion=None,
    sign="both",
    sharpness=1.0,
    mode="valid",
    dilation=1,
    noise_floor=0.0,
    fill=0.0,
    axis=-1,
    method="auto",
    center=False,
    max_memory=None,
    backend="auto",
):
    """Where the kernel(s) match: greedy best-first peaks of the sliding
    cosine, with an exclusion zone.

    The scores are those of :func:`sliding_cosine` with the same options.
    Each window's *key* is ``|s|`` (``sign='both'``), ``s`` or ``-s``.  The
    candidates are the local maxima of the key along the windows
    (``key[i] > key[i-1]`` and ``key[i] >= key[i+1]``; a missing neighbour,
    and a NaN score, count as ``-inf``, so a plateau reports its first
    window and NaN never matches) with ``key >= threshold``.  A window
    with no cosine scores ``fill`` and is keyed like any other score (with
    ``fill=0``, a match of score 0 where there are fewer than ``k`` better
    peaks): ``fill=np.nan`` never matches.  They are kept
    greedily, best key first (ties to the lower index, then the lower
    kernel), unless a kept match lies within ``exclusion`` windows
    (``|i - j| <= exclusion``) in any kernel of a bank; at most ``k`` per
    signal row.

    Parameters
    ----------
    signal, kernel : array_like
        As for :func:`sliding_cosine`: a kernel ``(m,)``, a bank ``(K, m)``
        or multi-channel kernels ``(C_out, C_in, m)``; every signal row
        (index of the axes other than ``axis`` and the channel axis) is
        searched on its own.
    k : int, optional
        At most this many matches per signal row (``>= 0``); None (default):
        no limit.
    threshold : float or callable, optional
        Keep only keys ``>= threshold``.  A callable is called once per
        signal row with that row's key array (``(L,)``, or ``(K, L)`` for
        several kernels; over several sliding axes ``(L_1, ..., L_r)`` or
        ``(K, L_1, ..., L_r)``; of the scores' dtype, NaN where the score is
        NaN)
        and returns the threshold, e.g. a median plus a multiple of the MAD
        (see :doc:`/matches`); that row's keys are then held in memory.
    exclusion : int or tuple of int, optional
        Half-width of the zone around a kept match in which no other match
        is kept, in windows (``>= 0``).  Default: half the window's span,
        ``((m - 1) * dilation + 1) // 2``.  With several sliding axes
        (``axis`` a tuple), one for all axes or one per axis: the zone is a
        box, and local maxima compare the neighbours along every axis (see
        :doc:`/images`).
    sign : {'both', 'positive', 'negative'}, optional
        'both' (default): a negated copy of the kernel matches too (key
        ``|s|``; the match keeps its signed score); 'positive': only
        ``s`` near +1; 'negative': only ``s`` near -1.
    sharpness, mode, dilation, noise_floor, fill, axis, method, center
        As for :func:`sliding_cosine`; ``center=True`` matches by Pearson's
        correlation (a motif riding on an offset or a baseline).
    max_memory : int or str, optional
        Working memory for the tiles of scores (bytes, or a string such as
        ``'64MiB'``); default 256 MiB.  A tile holds at least one row's
        run of windows as :func:`sliding_cosine` computes them together
        (tiles start where its runs do, so the scores keep its bits, but
        for the FFT's over blocks of rows, see Notes): with
        the FFT method, a segment of some ``2**18`` windows and its
        transforms' scratch for each thread, which a smaller ``max_memory``
        does not reduce: a few MiB for kernels of hundreds of taps, tens of
        MiB for tens of thousands (73 MiB on two threads at ``m = 40000``),
        growing in proportion to the span ``(m - 1) * dilation`` (some 1.5
        GiB at ``m = 2 * 10**6``).  Beyond the tiles, memory holds the
        candidates: at most ``k * K * (exclusion + 1)`` per row (at most
        65536, or ``k`` where larger, for each of the scan's runs, four a
        thread, within half of ``max_memory``; see Notes) with ``k``, and every candidate at or
        above the threshold without it.  Over several sliding axes, half
        of it holds a slab of scores and half the room for its candidates,
        and with ``k`` the candidates kept are at most ``k * (K * ceil(B /
        2) + 1)`` per batch index, ``B`` the windows of the exclusion box
        (see :doc:`/matches`); the signal there is read in place only where
        it is C-contiguous float32 or float64 in ``mode='valid'`` (float64
        with magnitudes inside ``[2**-480, 2**480]``, else scaled into them
        by a power of two), and otherwise converted whole first (an integer
        image to float64),
        outside ``max_memory``, as are the FFT method's bands of rows and
        a band's window sums (a few float64 arrays of at most about 2**18
        samples' worth, whatever the batch).
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, the scores are computed on the device as a
        whole and selected on the host; the result is NumPy either way.

    Returns
    -------
    Matches
        ``index``, ``score``, ``kernel`` and ``batch`` arrays, best first.

    Raises
    ------
    ValueError
        Negative ``k`` or ``exclusion``, NaN ``threshold`` (or a callable
        returning NaN), ``sign`` not one of the three, bad ``max_memory``,
        and every error of :func:`sliding_cosine`.
    TypeError
        ``k`` or ``exclusion`` not an integer, ``threshold`` neither a
        number nor a callable, ``max_memory`` neither a number nor a
        string, and every error of :func:`sliding_cosine`.

    See Also
    --------
    sliding_cosine : the scores.

    Notes
    -----
    The scores are computed a tile of windows at a time (of every signal
    row) and scanned for candidates at once, so memory stays bounded
    whatever the signal's length (a ``numpy.memmap`` of 10**9 samples
    works); windows on a tile border are judged with their true
    neighbours, and the matches are those of the whole score array,
    exactly.  With ``k``, only the best candidates of each row are kept
    while scanning: greedy selection only ever consults better candidates,
    and each kept match suppresses at most ``K * (exclusion + 1)`` of them,
    so ``k * K * (exclusion + 1)`` candidates always suffice; where that is
    more than the pool (65536, fewer where half of ``max_memory`` cannot
    hold that for each of the scan's runs), the scan runs again where the
    pool kept fewer than ``k`` matches while candidates were left out
    (the best candidates crowded into a few exclusion zones), with twice
    the pool each time where memory holds it.  A ``k``
    that no row can reach (at least ``ceil(L / (exclusion + 1))``, the most
    matches ``L`` windows hold) is a search without it.  Signal rows
    beyond what ``max_memory`` holds in a tile are searched a block of rows
    at a time.  The direct method's scores of a row are its own, so blocks
    of rows keep them; the FFT method plans each segment's blocks over
    the rows it is given (which to transform, and how long; rows of a
    segment's ``2**18`` windows at a time), so a block of
    rows can score a window a rounding apart from the whole call (within
    the FFT's error bound, see :func:`sliding_cosine`), and a score within
    that of the threshold can fall on either side of it.  Where that
    matters, ``method='direct'``, or a ``max_memory`` that holds every row.

    Over several sliding axes (images, volumes) the scores come a slab of
    output rows along the first sliding axis at a time (runs of the bands
    :func:`sliding_cosine` computes, so the same bits), each slab's first
    rows repeating the last of the one before, and the matches are those
    of the whole score array, exactly.  A callable ``threshold``, a GPU or
    a Dask signal computes the whole scores first.

    Examples
    --------
    The seed-000 motifs: an exact, a negated and a downscaled copy of the
    kernel score ±1; at sharpness 9 nothing else comes close.

    >>> import numpy as np
    >>> from cosim_np import find_matches
    >>> signal = np.array([0, 1, 2, 3, 0, -1, -2, -3, 0, 0.2, 0.4, 0.6, 0, 3, 2, 1, 0.])
    >>> found = find_matches(signal, [1, 2, 3], threshold=0.5, sharpness=9)
    >>> found.index, found.score
    (array([1, 5, 9]), array([ 1., -1.,  1.]))
    >>> find_matches(signal, [1, 2, 3], k=2, sign="positive")
    Matches(2 matches, exclusion=1)
      index   score  kernel
          1  1.0000       0
          9  1.0000       0
    """
    axis, dilation, mode, exclusion = spatial_plans.normalise_axis(
        axis, dilation=dilation, mode=mode, exclusion=exclusion)
    if _backend.is_xarray(signal):
        return _backend.xarray_impl("find_matches", backend)(
            signal, kernel, functools.partial(
                find_matches, k=k, threshold=threshold, exclusion=exclusion, sign=sign,
                sharpness=sharpness, dilation=dilation, noise_floor=noise_floor, fill=fill,
                method=method, center=center, max_memory=max_memory, backend=backend),
            axis=axis, mode=mode)
    if isinstance(axis, tuple):
        return _several_axes(signal, kernel, k, threshold, exclusion, sign, method, backend,
                             max_memory, dict(sharpness=sharpness, mode=mode, dilation=dilation,
                                              noise_floor=noise_floor, fill=fill, axis=axis,
                                              center=center))
    dask = _backend.is_dask(signal)
    # (a Dask signal takes its path whatever the backend: its blocks' scores on the GPU)
    if not dask and _backend.wants_cuda(backend, signal=signal, kernel=kernel):
        return _on_gpu(signal, kernel, k, threshold, exclusion, sign, max_memory, dict(
            sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor, fill=fill,
            axis=axis, method=method, center=center))
    # (a big-endian memory map converted a tile at a time, as an int16 one)
    x = (v.check_known_shape(signal, "signal", min_ndim=1) if dask else
         v.as_real_array(signal, "signal", native=False))
    splan = sliding_plans.plan_sliding(x, kernel, axis, mode, method, dilation, sharpness,
                                       noise_floor, fill, None, drivers.fill_unit_kernels,
                                       center)
    nker, _, m = splan.khat.shape
    mplan = plans.plan_matches(k, threshold, exclusion, sign, max_memory, nker=nker, m=m,
                               dilation=splan.d, nwin=splan.nwin,
                               lead=plans.lead_shape(x.shape, splan.ax, splan.channel_axis))
    if dask:  # each block's candidates, gathered; or, where not exact, each block's scores
        options = dict(sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor,
                       fill=fill, axis=axis, method=method, center=center)
        scoring = functools.partial(_sliding.sliding_cosine, backend=backend)
        found = None
        if mplan.threshold_fn is None:
            gathered = _backend.dask_impl("candidates")(signal, kernel, scoring, splan, mplan,
                                                       **options)
            found = cpu.select_candidates(*gathered, splan.nwin, mplan, splan.out_dtype)
        if found is None:
            source = _backend.dask_impl("score_tiles")(signal, kernel, scoring, splan, **options)
            found = cpu.select_source(source, splan, mplan)
        return _result(found, mplan, threshold)
    found = cpu.find_matches(x, splan, mplan, method)
    return _result(found, mplan, threshold)


def _on_gpu(signal, kernel, k, threshold, exclusion, sign, max_memory, options):
    """Scores on the device (the CUDA ``sliding_cosine``), selection on the host."""
    _check_selection(k, threshold, sign)
    scores = _to_host(_backend.cuda_impl("sliding_cosine")(signal, kernel, **options))
    kernel_shape = tuple(kernel.shape) if hasattr(kernel, "shape") else np.shape(kernel)
    ax, channel_axis, is_bank = plans.score_layout(len(np.shape(signal)), len(kernel_shape),
                                                   options["axis"])
    if is_bank:  # K just before the windows
        k_axis, l_axis = ax, ax + 1
    else:  # K on the channel axis, or none
        k_axis, l_axis = channel_axis, ax
    nwin = scores.shape[l_axis]
    nker = 1 if k_axis is None else scores.shape[k_axis]
    lead = tuple(size for axis, size in enumerate(scores.shape) if axis not in (k_axis, l_axis))
    mplan = plans.plan_matches(k, threshold, exclusion, sign, max_memory, nker=nker,
                               m=kernel_shape[-1], dilation=options["dilation"], nwin=nwin, lead=lead)
    return _result(cpu.select_scores(scores, ax, channel_axis, is_bank, mplan), mplan,
                   threshold)


def _several_axes(signal, kernel, k, threshold, exclusion, sign, method, backend, max_memory,
                  options):
    """``find_matches`` over several axes (``options`` has the rest of
    ``sliding_cosine``'s).  Device and Dask signals: their scores (on the
    device, or chunk by chunk) gathered on the host, then the selection."""
    scores = None
    if _backend.is_dask(signal) or _backend.wants_cuda(backend, signal=signal, kernel=kernel):
        _check_selection(k, threshold, sign)  # (before any scores are computed)
        plans.check_exclusions(exclusion, len(options["axis"]))
        v.check_memory(max_memory, "max_memory", 0)
        scores = _to_host(_sliding.sliding_cosine(signal, kernel, method=method,
                                                  backend=backend, **options))
        # a stand-in of the scores' dtype (the plan's result dtype) for the plan
        x, kernel = np.broadcast_to(np.zeros((), scores.dtype), np.shape(signal)), \
            _to_host(kernel)
    else:
        x = v.as_real_array(signal, "signal")
    splan = spatial_plans.plan_sliding(x, kernel, options["axis"], options["mode"], method,
                                       options["dilation"], options["sharpness"],
                                       options["noise_floor"], options["fill"], None,
                                       drivers.fill_unit_kernels, options["center"])
    order = spatial_plans.layout_axes(x.ndim, splan.geometry.axes, splan.channel_axis)
    lead = tuple(x.shape[i] for i in order[: x.ndim - len(splan.geometry.axes)]
                 if i != splan.channel_axis)
    mplan = plans.plan_spatial_matches(k, threshold, exclusion, sign, max_memory,
                                       m=splan.khat.shape[2:], dilation=splan.geometry.d,
                                       lead=lead, nker=splan.khat.shape[0],
                                       nout=splan.geometry.nout)
    if scores is None:
        return _result(spatial_matches.find_matches(x, splan, mplan, method), mplan, threshold)
    return _result(spatial_matches.select(scores, splan, mplan), mplan, threshold)


def _check_selection(k, threshold, sign):
    """Check the selection's arguments before any scores are computed."""
    plans.check_k(k)
    plans.check_threshold(threshold)
    v.check_choice(sign, "sign", plans.SIGNS)


def _to_host(array):
    """A device or lazy result as a NumPy array (Numba device arrays, CuPy,
    PyTorch, Dask)."""
    if isinstance(array, np.ndarray):
        return array
    if _backend.is_dask(array):
        return np.asarray(array.compute())
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    if hasattr(array, "get"):  # CuPy
        return array.get()
    if hasattr(array, "detach"):  # PyTorch
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _result(found, mplan, threshold):
    """The matches ``found``; ``threshold``: as given (``Matches.threshold``
    is a number given as one, ``-inf`` too, else None)."""
    row, idx, ker, score = found
    batch = np.stack(np.unravel_index(row, mplan.lead_shape), axis=-1) if mplan.lead_shape else \
        np.empty((row.size, 0), dtype=np.int64)
    threshold = None if threshold is None or mplan.threshold_fn is not None else mplan.threshold
    return Matches(idx, score, ker, batch.astype(np.int64), exclusion=mplan.exclusion,
                   threshold=threshold)


def _described(value):
    """A value as an error message names it: an array or a sequence by
    its type and shape or length."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def plot_matches(signal, matches, kernel, *, ax=None, mode="valid", dilation=1, sharpness=1.0,
                 noise_floor=0.0, fill=0.0, center=False, sign="both", threshold=None):
    """Draw a 1-d signal with its matches, and the score track underneath.

    Each matched window is shaded, with the kernel that matched drawn over
    it at the window's scale and sign (the kernel times ``<w, k> / <k, k>``,
    its least-squares fit to the window ``w``; with ``center``, the centered
    kernel's fit to the centered window, plus the window's mean); the score
    track is :func:`sliding_cosine` with the same options (one line per
    kernel of a bank), with the threshold drawn at ``±threshold``
    (``+threshold`` for ``sign='positive'``, ``-threshold`` for
    ``'negative'``).

    Parameters
    ----------
    signal : array_like, 1-d
        The signal that was searched.
    matches : Matches
        Its matches (those of one signal row).
    kernel : array_like
        The kernel ``(m,)`` or bank ``(K, m)`` that was searched for.
    ax : matplotlib Axes or pair of Axes, optional
        Where to draw: a pair gets the signal and the score track, one
        Axes the signal alone; None (default) makes a new figure with both.
    mode, dilation, sharpness, noise_floor, fill, center, sign : optional
        The options of the search (as for :func:`find_matches`), so that
        the windows and scores drawn are the ones matched.
    threshold : float or callable, optional
        Drawn on the score track (``matches.threshold`` when None); a
        callable, as :func:`find_matches` takes one, is called with the
        drawn scores' keys and its level drawn.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``figure.savefig(path)`` writes it).

    Raises
    ------
    ImportError
        Without matplotlib (the ``plot`` extra).
    ValueError
        For a signal that is not 1-d, matches of several sliding axes or
        signal rows, a kernel of more than two axes or of fewer kernels
        than the matches name, an ``ax`` neither one Axes nor a pair, a
        ``sign`` other than 'both', 'positive' and 'negative', or options
        :func:`sliding_cosine` refuses.
    TypeError
        For a complex or non-numeric signal or kernel, or ``matches`` not
        a :class:`Matches`.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from cosim_np import find_matches, plot_matches
    >>> signal = np.array([0, 1, 2, 3, 0, -1, -2, -3, 0, 0.2, 0.4, 0.6, 0, 3, 2, 1, 0.])
    >>> found = find_matches(signal, [1, 2, 3], threshold=0.5, sharpness=9)
    >>> figure = plot_matches(signal, found, [1, 2, 3], sharpness=9)
    >>> len(figure.axes)
    2
    >>> figure.savefig("matches.png")  # doctest: +SKIP
    """
    if sign not in ("both", "positive", "negative"):
        raise ValueError(f"sign must be 'both', 'positive' or 'negative'; got {sign!r}.")
    if not isinstance(matches, Matches):
        raise TypeError(f"matches must be the Matches that find_matches returned; got "
                        f"{type(matches).__name__}.")
    if np.ndim(matches.index) != 1:
        raise ValueError("plot_matches draws the matches of one sliding axis; these have "
                         f"{np.shape(matches.index)[-1]} (axis a tuple): draw them with "
                         "matplotlib's imshow, as in the Images page.")
    try:
        import matplotlib.figure
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_matches needs matplotlib, which is not installed; install it with "
            "pip install 'cosim_np[plot]'") from None
    x = v.as_real_array(signal, "signal").astype(np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal must be 1-d to be drawn; got shape {x.shape}.")
    if np.unique(np.asarray(matches.batch), axis=0).shape[0] > 1:
        raise ValueError("matches holds matches of several signal rows (matches.batch); "
                         "plot_matches draws one row: pass that row and the matches found in it "
                         "(find_matches(signal[r], ...)).")
    bank = v.as_real_array(kernel, "kernel").astype(np.float64)
    if bank.ndim > 2:
        raise ValueError(f"kernel must be a kernel (m,) or a bank (K, m) to be drawn over a 1-d "
                         f"signal; got shape {bank.shape}.")
    # the score track's call checks every option, whether it is drawn or not
    scores = _sliding.sliding_cosine(x, bank, mode=mode, dilation=dilation, sharpness=sharpness,
                                     noise_floor=noise_floor, fill=fill, center=center)
    bank = bank.reshape(-1, bank.shape[-1])
    if matches.kernel.size and matches.kernel.max() >= bank.shape[0]:
        raise ValueError(f"matches holds matches of kernel {matches.kernel.max()} of a bank, but "
                         f"kernel holds {bank.shape[0]} kernel{'s' if bank.shape[0] != 1 else ''} "
                         f"(shape {np.shape(kernel)}): pass the kernel or bank that was searched.")
    m = bank.shape[-1]
    span = (m - 1) * dilation
    left = sliding_plans.padding(mode, span)[0]
    if ax is None:
        figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5),
                                             gridspec_kw=dict(height_ratios=(2, 1)))
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        # (a Figure has a figure too, but nothing to plot on)
        if len(axes) not in (1, 2) or not all(
                hasattr(one, "figure") and hasattr(one, "plot") for one in axes) or (
                isinstance(ax, np.ndarray) and ax.ndim > 1):
            raise ValueError("ax must be one matplotlib Axes or a pair of them (the signal's "
                             f"and the score track's); got {_described(ax)}.")
        top, bottom = axes if len(axes) == 2 else (axes[0], None)
        figure = top.figure
        while isinstance(figure, matplotlib.figure.SubFigure):  # (its root Figure saves)
            figure = figure.figure
    top.plot(x, color="0.3", lw=0.8, label="signal")
    for i, (index, score, which) in enumerate(zip(matches.index, matches.score, matches.kernel)):
        start = int(index) - left
        taps = start + dilation * np.arange(m)
        inside = (taps >= 0) & (taps < x.size)
        window = np.where(inside, x[np.clip(taps, 0, x.size - 1)], 0.0)
        k = bank[int(which)]
        mean = 0.0
        if center:
            mean = window.mean()
            k = k - k.mean()
            window = window - mean
        fit = mean + (k * (window @ k) / (k @ k) if k.any() else k)
        top.axvspan(max(0, start), min(x.size - 1, start + span), color="tab:orange", alpha=0.15, lw=0)
        top.plot(taps[inside], fit[inside], color="tab:red" if score < 0 else "tab:blue", lw=1.5,
                 label="kernel, fitted" if i == 0 else None)
    top.set_ylabel("signal")
    if bottom is not None:
        positions = np.arange(scores.shape[-1]) - left
        for row in np.atleast_2d(scores):
            bottom.plot(positions, row, lw=0.8)
        level = matches.threshold if threshold is None else threshold
        if callable(level):  # (the level find_matches took from the same scores' keys)
            level = plans.threshold_value(level(cpu._keys(scores, plans.SIGN_CODES[sign])))
        if level is not None:
            for value in {"both": (level, -level), "positive": (level,),
                          "negative": (-level,)}[sign]:
                bottom.axhline(value, color="tab:green", ls="--", lw=0.8)
        bottom.plot(np.asarray(matches.index) - left, matches.score, "o", color="tab:red", ms=4)
        bottom.set_ylim(-1.05, 1.05)
        bottom.set_ylabel("score")
        bottom.set_xlabel("sample (window start)")
    return figure
