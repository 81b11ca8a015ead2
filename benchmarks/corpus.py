"""The realistic-signal corpus: signals shaped like the data people have.

Gaussian noise is the easiest input a sliding cosine can get: every window
has about the same norm. Real recordings have quiet and loud stretches,
sparse loud events, large offsets, exact-zero gaps and integer quantisation,
and those are where a method's speed or accuracy can collapse (the FFT path
once ran 30 to 100 times slower on seismograms than on noise). The
benchmarks and the exactness tests use every class below, side by side with
noise.

Each class is generated from a seed, vectorised, in float64 (cast with
``astype`` for other dtypes), so ``make("bursty", 10**7)`` is the same array
on every machine and takes well under a second.

============  ===============================================================
class         what it is like
============  ===============================================================
``noise``     unit Gaussian noise (what every earlier benchmark used)
``bursty``    noise whose amplitude steps between the decades 1e-3 .. 1e3,
              in stretches of 10**2 to 10**5 samples (log-uniform lengths)
``events``    unit noise with sparse decaying oscillations of amplitude 1e2 to
              1e4 (earthquakes in a seismogram, spikes in a recording)
``offset``    a baseline of 1e4 with slow drift, plus a unit-scale signal (raw
              sensor or ECG data: the offset dominates every window)
``speech``    amplitude-modulated noise quantised to int16, words of 10**3 to
              3*10**4 samples separated by exact-zero silences
``sparse``    mostly exact zeros, with isolated spikes of amplitude 1e-2 to 1e2
``seismic``   ObsPy's example traces (three components of a local
              earthquake, 3000 samples each) tiled to length, plus unit noise;
              only where ObsPy is installed (:func:`available`)
============  ===============================================================

Usage::

    from benchmarks import corpus
    for name in corpus.available():
        x = corpus.make(name, 10**6, np.float32)
"""

import numpy as np

CLASSES = ("noise", "bursty", "events", "offset", "speech", "sparse")
OPTIONAL = ("seismic",)  # needs ObsPy (benchmarks only; never a dependency)


def available():
    """The classes that can be generated here: :data:`CLASSES`, and
    ``seismic`` where ObsPy is installed."""
    names = list(CLASSES)
    try:
        import obspy  # noqa: F401
    except ImportError:
        return names
    return names + ["seismic"]


def make(name, n, dtype=np.float64, seed=0):
    """Signal ``name`` of ``n`` samples, cast to ``dtype``; the same array for
    the same ``(name, n, seed)`` on every machine."""
    if name not in CLASSES + OPTIONAL:
        raise ValueError(f"unknown corpus class {name!r}; expected one of {CLASSES + OPTIONAL}.")
    rng = np.random.default_rng([seed, CLASSES.index(name) if name in CLASSES else 99])
    return _GENERATORS[name](rng, int(n)).astype(dtype)


def _stretches(rng, n, low, high):
    """Lengths (log-uniform in ``[low, high]``) of consecutive stretches
    covering at least ``n`` samples."""
    lengths = []
    total = 0
    while total < n:
        batch = np.rint(10.0 ** rng.uniform(np.log10(low), np.log10(high), 1024)).astype(np.int64)
        lengths.append(batch)
        total += int(batch.sum())
    lengths = np.concatenate(lengths)
    return lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]


def _noise(rng, n):
    return rng.standard_normal(n)


def _bursty(rng, n):
    lengths = _stretches(rng, n, 1e2, 1e5)
    levels = 10.0 ** rng.integers(-3, 4, lengths.size)
    return rng.standard_normal(n) * np.repeat(levels, lengths)[:n]


def _oscillations(rng, n, count, amplitude_decades, decay_range, period_range):
    """Decaying oscillations ``A exp(-t/tau) sin(2 pi t / T)`` at random
    onsets, summed; each lasts 8 decay times."""
    out = np.zeros(n)
    onsets = rng.integers(0, n, count)
    amplitudes = 10.0 ** rng.uniform(*amplitude_decades, count) * rng.choice([-1.0, 1.0], count)
    decays = 10.0 ** rng.uniform(*np.log10(decay_range), count)
    periods = rng.uniform(*period_range, count)
    for onset, amplitude, decay, period in zip(onsets, amplitudes, decays, periods):
        t = np.arange(min(n - onset, int(8 * decay) + 1))
        wave = np.exp(-t / decay) * np.sin(2 * np.pi * t / period)
        out[onset : onset + t.size] += amplitude * wave
    return out


def _events(rng, n):
    # about one event per 50 000 samples, lasting 8 * (30 .. 2000) samples
    count = max(1, n // 50_000)
    return rng.standard_normal(n) + _oscillations(rng, n, count, (2, 4), (30, 2000), (4, 60))


def _offset(rng, n):
    t = np.arange(n)
    # a slow random walk (a few units per 10**5 samples) and a slow oscillation
    walk = np.cumsum(rng.standard_normal(n // 1000 + 2))
    drift = np.interp(t / 1000.0, np.arange(walk.size), walk)
    wave = 20.0 * np.sin(2 * np.pi * t / 2.5e5)
    # the unit-scale signal: noise, smoothed a little, plus sharp beats (an ECG's R peaks)
    smooth = np.convolve(rng.standard_normal(n + 4), np.ones(5) / np.sqrt(5), mode="valid")[:n]
    beats = np.zeros(n)
    beats[np.arange(rng.integers(0, 800), n, 800)] = 3.0
    return 1e4 + drift + wave + smooth + beats


def _speech(rng, n):
    words = _stretches(rng, n, 1e3, 3e4)
    gaps = np.rint(10.0 ** rng.uniform(2.5, 4, words.size)).astype(np.int64)
    out = np.zeros(n)
    position = 0
    for length, gap in zip(words, gaps):
        stop = min(n, position + length)
        if stop <= position:
            break
        t = np.arange(stop - position)
        # syllables: a raised-sine envelope, 3 .. 8 per word, peak 300 .. 20000
        syllables = rng.integers(3, 9)
        envelope = np.sin(np.pi * syllables * t / length) ** 2 * 10.0 ** rng.uniform(2.5, 4.3)
        voiced = np.convolve(rng.standard_normal(t.size + 7), np.hanning(8), mode="valid")[: t.size]
        out[position:stop] = envelope * voiced / 2.0
        position = stop + gap
    return np.clip(np.rint(out), -32768, 32767)


def _sparse(rng, n):
    out = np.zeros(n)
    count = max(1, n // 1000)
    where = rng.integers(0, n, count)
    out[where] = 10.0 ** rng.uniform(-2, 2, count) * rng.choice([-1.0, 1.0], count)
    return out


def _seismic(rng, n):
    import obspy

    traces = np.concatenate([trace.data.astype(np.float64) for trace in obspy.read()])
    return np.resize(traces, n) + rng.standard_normal(n)


_GENERATORS = {
    "noise": _noise,
    "bursty": _bursty,
    "events": _events,
    "offset": _offset,
    "speech": _speech,
    "sparse": _sparse,
    "seismic": _seismic,
}


# ---------------------------------------------------------------------------
# images: noise and scikit-image's shipped photographs

IMAGES = ("noise", "camera", "moon", "hubble", "text")


def image(name, size=2048, dtype=np.float32, seed=0):
    """A ``size`` x ``size`` grey image (values 0 .. 255 for the photographs,
    unit Gaussian noise for ``noise``), cast to ``dtype``.

    The photographs are scikit-image's shipped sample images (``skimage.data``:
    the cameraman, the Moon's surface, the Hubble deep field -- mostly black
    sky with bright stars and galaxies --, a page of text), grey, tiled with
    mirrored copies to ``size`` (their own resolution and texture, no
    interpolation).  Needs scikit-image for those."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; expected one of {IMAGES}.")
    if name == "noise":
        return np.random.default_rng([seed, 1000]).standard_normal((size, size)).astype(dtype)
    import skimage.data
    from skimage.color import rgb2gray

    picture = getattr(skimage.data, {"hubble": "hubble_deep_field"}.get(name, name))()
    if picture.ndim == 3:
        picture = np.rint(rgb2gray(picture) * 255.0)
    picture = picture.astype(np.float64)
    tile = np.block([[picture, picture[:, ::-1]], [picture[::-1], picture[::-1, ::-1]]])
    reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
    return np.tile(tile, reps)[:size, :size].astype(dtype)


def template(picture, m, seed=0):
    """An ``m`` x ``m`` template cut from ``picture`` where it is not flat (the
    window of largest spread among a few random ones), as a copy."""
    rng = np.random.default_rng([seed, m])
    best, spread = None, -1.0
    for _ in range(16):
        i, j = rng.integers(0, picture.shape[0] - m + 1), rng.integers(0, picture.shape[1] - m + 1)
        cut = picture[i : i + m, j : j + m]
        if float(np.std(cut)) > spread:
            best, spread = cut, float(np.std(cut))
    return np.array(best)
