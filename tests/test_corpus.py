"""Exactness on the realistic-signal corpus (``benchmarks/corpus.py``): every
class, dtype and method against the naive references, with the windows
where the FFT path's shortcuts matter most (quiet windows next to loud
ones) always among those checked; the properties that must hold on such
signals (power-of-two scaling, sign, NaN locality, thread count); and the
FFT path's plan, shown to take each of its branches on these signals."""

import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import maximum_filter1d

from benchmarks import corpus
from cosim_np import sliding_cosine
from cosim_np._core import config
from cosim_np._core.scalars import SAFE_MAX, SAFE_MIN
from cosim_np._cpu import blocks, drivers
from cosim_np._cpu import fft as transforms
from tests import naive
from tests.strategies import scalable_elements

EPS64 = np.finfo(np.float64).eps
N = 30_000
MS = (3, 16, 64, 200, 1024)

# every test once per FFT library (tests/conftest.py)


def tolerance(out_dtype, taps):
    """As tests/test_sliding.py: the float64 error of ``taps`` products, plus
    the rounding to the output dtype."""
    rounding = 0.0 if out_dtype == np.float64 else float(np.finfo(out_dtype).eps)
    return 8 * (taps + 4) * EPS64 + rounding


def picks(x, m, count=300, seed=0):
    """Windows to check: ``count`` at random, and the ``count`` quietest against
    the loudest sample within a few block lengths (where an FFT block mixes
    loud and quiet stretches, and windows are flagged or samples left out)."""
    x = np.asarray(x, dtype=np.float64)
    nwin = x.size - m + 1
    energy = np.convolve(np.nan_to_num(x) ** 2, np.ones(m), mode="valid")
    loudest = maximum_filter1d(np.abs(np.nan_to_num(x)), size=8 * m + 1024)[:nwin]
    quietness = np.full(nwin, np.inf)
    np.divide(energy, loudest**2, out=quietness, where=(energy > 0) & (loudest > 0))
    quiet = np.argsort(quietness, kind="stable")[:count]
    random = np.random.default_rng(seed).choice(nwin, size=min(count, nwin), replace=False)
    return np.unique(np.concatenate([quiet, random, [0, nwin - 1]]))


def reference(x, kernel, chosen):
    m = len(kernel)
    return np.array([naive.cosine(x[i : i + m], kernel) for i in chosen])


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("name", corpus.CLASSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", MS)
def test_every_class_matches_naive(name, dtype, m):
    x = corpus.make(name, N, dtype, seed=m)
    kernel = np.random.default_rng(m).standard_normal(m)
    chosen = picks(x, m)
    want = reference(x, kernel, chosen)
    for method in ("direct", "fft", "auto"):
        got = sliding_cosine(x, kernel, method=method)
        assert got.dtype == dtype
        np.testing.assert_allclose(got[chosen], want, rtol=0, atol=tolerance(dtype, m),
                                   err_msg=f"{name}, method={method}")


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("name", corpus.CLASSES)
@pytest.mark.parametrize("method", ["fft", "auto"])
def test_power_of_two_scaling_and_sign_are_exact(name, method):
    m = 256
    for dtype, shifts in ((np.float32, (-60, 40)), (np.float64, (-700, 600))):
        x = corpus.make(name, N, dtype)
        kernel = np.random.default_rng(1).standard_normal(m)
        base = sliding_cosine(x, kernel, method=method)
        for shift in shifts:
            scaled = np.ldexp(x, shift).astype(dtype)
            np.testing.assert_array_equal(sliding_cosine(scaled, kernel, method=method), base)
        np.testing.assert_array_equal(sliding_cosine(-x, kernel, method=method), -base)
        np.testing.assert_array_equal(sliding_cosine(x, -2.0 * kernel, method=method), -base)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("name", corpus.CLASSES)
def test_nan_stays_local_on_every_class(name):
    m = 200
    x = corpus.make(name, N)
    kernel = np.random.default_rng(2).standard_normal(m)
    clean = sliding_cosine(x, kernel, method="fft")
    dirty = x.copy()
    dirty[[1000, 17_000]] = [np.nan, np.inf]
    got = sliding_cosine(dirty, kernel, method="fft")
    touched = np.zeros(clean.size, dtype=bool)
    for position in (1000, 17_000):
        touched[max(0, position - m + 1) : position + 1] = True
    assert np.all(np.isnan(got[touched]))
    np.testing.assert_allclose(got[~touched], clean[~touched], rtol=0,
                               atol=tolerance(np.float64, m))


@pytest.mark.usefixtures("fft_engine")
def test_thread_count_changes_no_bit_on_real_signals():
    # longer than one FFT segment per thread, so that both threads plan blocks
    m = 200
    kernel = np.random.default_rng(3).standard_normal(m)
    saved = numba.get_num_threads()
    try:
        for name in ("bursty", "events", "speech"):
            x = corpus.make(name, 3 * config.SEGMENT_WINDOWS)
            numba.set_num_threads(1)
            one = sliding_cosine(x, kernel, method="fft")
            numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
            np.testing.assert_array_equal(sliding_cosine(x, kernel, method="fft"), one)
    finally:
        numba.set_num_threads(saved)


@pytest.mark.usefixtures("fft_engine")
def test_a_window_far_quieter_than_its_block_is_not_a_zero_window():
    # Its sum of squares in block units underflows; it must be flagged (and
    # computed directly), not given `fill` nor an FFT dot swamped by rounding.
    x = np.array([1.0, 4.95676392e-206, 0.0, 0.0, 0.0])
    got = sliding_cosine(x, np.ones(4), method="fft")
    np.testing.assert_array_equal(got, [0.5, 0.5])


class PlanRecorder:
    """Records the FFT path's plans (``_cpu.blocks``) during a call."""

    def __init__(self, monkeypatch):
        self.slots, self.loud, self.lengths, self.whole = [], [], [], []
        plan, loud, assign = blocks.plan_blocks, blocks.leave_out_loud, blocks.assign_slots

        def plan_blocks(x, w0, w1, step, nfft, *args):
            self.lengths.append(nfft)
            return plan(x, w0, w1, step, nfft, *args)

        def leave_out_loud(*args):
            loud(*args)
            self.loud.append(args[10].copy())

        def assign_slots(flagged_counts, nblocks, max_flagged, slots, *args):
            direct = assign(flagged_counts, nblocks, max_flagged, slots, *args)
            self.slots.append(slots[:, :nblocks].copy())
            self.whole.append(args[-1].copy())  # blocks scattered whole, per row
            return direct

        monkeypatch.setattr(blocks, "plan_blocks", plan_blocks)
        monkeypatch.setattr(blocks, "leave_out_loud", leave_out_loud)
        monkeypatch.setattr(blocks, "assign_slots", assign_slots)


def check_against_naive(x, kernel, method="fft"):
    got = sliding_cosine(x, kernel, method=method)
    chosen = picks(x, len(kernel), count=400)
    np.testing.assert_allclose(got[chosen], reference(x, kernel, chosen), rtol=0,
                               atol=tolerance(x.dtype, len(kernel)))
    return got


@pytest.mark.usefixtures("fft_engine")
def test_blocks_of_mostly_flagged_windows_get_direct_dots(monkeypatch):
    # quiet noise broken by loud bursts: the blocks holding both have most of
    # their windows flagged and are computed directly, without a transform
    rng = np.random.default_rng(4)
    x = rng.standard_normal(40_000) * 1e-3
    for start in range(2_000, 40_000, 6_000):
        x[start : start + 300] *= 1e9
    recorder = PlanRecorder(monkeypatch)
    kernel = rng.standard_normal(200)
    check_against_naive(x, kernel)
    slots = np.concatenate([s.ravel() for s in recorder.slots])
    assert np.any(slots < 0) and np.any(slots >= 0)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("nker", [1, 4])
def test_auto_chooses_the_fft_only_where_its_plan_transforms_noise(monkeypatch, nker):
    # the method's choice and the segments' plan read one cost model: where
    # "auto" picks the FFT path, Gaussian noise is transformed there, not
    # given direct dots block by block after a plan (a slower direct method)
    rng = np.random.default_rng(10)
    x = rng.standard_normal(20_000)
    recorder = PlanRecorder(monkeypatch)
    chosen = []
    for m in range(100, 400, 6):
        method = drivers.choose_method("auto", m, 1, nker, 1, x.size - m + 1, m - 1)
        chosen.append(method)
        if method == "fft":
            recorder.slots.clear()
            sliding_cosine(x, rng.standard_normal((nker, m)))
            assert recorder.slots and all(np.all(s >= 0) for s in recorder.slots), m
    assert "direct" in chosen and "fft" in chosen


def test_auto_charges_each_row_its_whole_blocks(monkeypatch):
    """Rows shorter than a block each take a whole transform: 5000 rows of
    300 samples at m = 200 (a block of 4096 each) took the FFT path at 20
    times the direct dots' time; one row of as many windows still takes it."""
    assert drivers.choose_method("auto", 200, 1, 1, 5000, 101, 199) == "direct"
    assert drivers.choose_method("auto", 200, 1, 1, 1, 5000 * 101, 199) == "fft"
    rng = np.random.default_rng(12)
    rows, k = rng.standard_normal((300, 300)), rng.standard_normal(200)
    recorder = PlanRecorder(monkeypatch)
    got = sliding_cosine(rows, k)
    assert not recorder.slots
    assert np.array_equal(got, sliding_cosine(rows, k, method="direct"))


@pytest.mark.parametrize("m", [256, 1024])
def test_auto_gives_short_signals_direct_dots(monkeypatch, m):
    # the FFT path's fixed cost per call (planning, the kernel's transforms)
    # is more than a short signal's direct dots: "auto" takes them, with the
    # direct method's bits; long signals still take the FFT
    rng = np.random.default_rng(m)
    k = rng.standard_normal(m)
    recorder = PlanRecorder(monkeypatch)
    short = rng.standard_normal(m + 1500)
    assert drivers.choose_method("auto", m, 1, 1, 1, short.size - m + 1, m - 1) == "direct"
    got = sliding_cosine(short, k)
    assert not recorder.slots
    assert np.array_equal(got, sliding_cosine(short, k, method="direct"))
    long = rng.standard_normal(200_000)
    assert drivers.choose_method("auto", m, 1, 1, 1, long.size - m + 1, m - 1) == "fft"
    sliding_cosine(long, k)
    assert recorder.slots


def check_bit_promises(x, kernels, base, shifts):
    """The FFT path's cosines of ``x`` scaled by ``2**shift`` for each of
    ``shifts``, of ``-x``, and with two threads (the caller runs one) are
    ``base``'s bits (negated for ``-x``)."""
    for shift in shifts:
        scaled = np.ldexp(x, shift).astype(x.dtype)
        np.testing.assert_array_equal(sliding_cosine(scaled, kernels, method="fft"), base)
    np.testing.assert_array_equal(sliding_cosine(-x, kernels, method="fft"), -base)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    np.testing.assert_array_equal(sliding_cosine(x, kernels, method="fft"), base)


def left_out_in_part(recorder):
    """Whether ``leave_out_loud`` left some samples of a block out of its
    transform, but not all."""
    return any(np.any((loud > 0) & (loud < blocks.EVERY_SAMPLE)) for loud in recorder.loud)


@pytest.mark.usefixtures("fft_engine")
def test_loud_spikes_are_left_out_of_the_transform(monkeypatch):
    # isolated spikes of amplitudes 1e-2 .. 1e2 over a quiet floor: left out
    # of the transforms and added one by one, the windows holding only the
    # floor and small spikes are exact
    recorder = PlanRecorder(monkeypatch)
    rng = np.random.default_rng(5)
    x = corpus.make("sparse", 40_000) + 1e-4 * rng.standard_normal(40_000)
    kernel = rng.standard_normal(1024)
    check_against_naive(x, kernel)
    assert left_out_in_part(recorder)
    assert not any(np.any(whole) for whole in recorder.whole)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("floor", [0.0, 1e-4])
@pytest.mark.parametrize("dilation", [1, 3])
def test_left_out_samples_with_dilation_and_channels(monkeypatch, dilation, floor):
    # spikes among exact zeros (blocks scattered whole), or over a quiet
    # floor (the spikes alone left out)
    recorder = PlanRecorder(monkeypatch)
    rng = np.random.default_rng(6)
    x = floor * rng.standard_normal((2, 3, 30_000))
    where = rng.integers(0, 30_000, (2, 3, 40))
    for b in range(2):
        for c in range(3):
            x[b, c, where[b, c]] = 10.0 ** rng.uniform(-2, 2, 40)
    kernels = rng.standard_normal((2, 3, 300))
    got = sliding_cosine(x, kernels, dilation=dilation, method="fft")
    if floor:
        assert left_out_in_part(recorder)
    else:
        assert all(np.all(whole > 0) for whole in recorder.whole)
    span = 299 * dilation
    for b in range(2):
        chosen = picks(x[b, 0] + x[b, 1] + x[b, 2], span + 1, count=150)
        for k in range(2):
            want = [naive.cosine(x[b, :, i : i + span + 1 : dilation], kernels[k]) for i in chosen]
            np.testing.assert_allclose(got[b, k, chosen], want, rtol=0,
                                       atol=tolerance(np.float64, 900))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_blocks_are_scattered_whole_and_keep_every_bit_promised(monkeypatch, dtype):
    # spikes among exact zeros: no block is transformed, each spike is added
    # to the dots of its windows, and the windows holding only small spikes
    # are exact; power-of-two scaling (into and out of the safe range),
    # sign and thread count change no bit
    transformed = []
    forward = transforms._forward
    monkeypatch.setattr(transforms, "_forward", lambda blocks, *args: (
        transformed.append(blocks.shape[1]), forward(blocks, *args))[1])
    x = corpus.make("sparse", 3 * config.SEGMENT_WINDOWS // 2, dtype)
    kernel = np.random.default_rng(9).standard_normal(1024)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        base = check_against_naive(x, kernel)
        assert not transformed
        check_bit_promises(x, kernel, base, (-60, 40) if dtype == np.float32 else (-700, 600))
    finally:
        numba.set_num_threads(saved)


@pytest.mark.usefixtures("fft_engine")
def test_sparse_blocks_spanning_too_many_binades_are_transformed(monkeypatch):
    # spikes of 1e300 and 1e-300 among zeros: scaled by the loud one's
    # exponent, the quiet one would underflow to zero in the products, so
    # the blocks holding both are transformed and the quiet one's windows
    # flagged, and they stay exact
    recorder = PlanRecorder(monkeypatch)
    x = np.zeros(20_000)
    x[3_000::4_000] = 1e300
    x[3_500::4_000] = 1e-300
    kernel = np.random.default_rng(11).standard_normal(300)
    got = sliding_cosine(x, kernel, method="fft")
    transformed = [np.sum(slots >= 0) - np.sum(whole) for slots, whole in
                   zip(recorder.slots, recorder.whole)]
    assert sum(transformed) > 0
    np.testing.assert_allclose(got[3_300:3_500], reference(x, kernel, range(3_300, 3_500)),
                               rtol=0, atol=tolerance(np.float64, 300))
    assert np.all(np.abs(got[3_300:3_500]) > 0)


def record_runs(monkeypatch, shorter=False):
    """The runs of flagged windows that ``run_fft`` transforms again in a row
    of their own, as ``(row, start, stop, block length)``, ``row`` the
    address of the row's samples (``run_fft`` takes many rows a block at a
    time); without ``shorter``, with no shorter blocks to plan in, which
    would leave fewer runs to look at."""
    if not shorter:
        monkeypatch.setattr(config, "SHORT_BLOCK_SPANS", 1 << 20)
    runs = []
    compute = drivers._FlaggedRuns.compute

    def recorded(self, found, piece, *args):
        runs.extend((piece[int(run[0])].ctypes.data,) + tuple(int(v) for v in run[1:3])
                    + (self.length.nfft,) for run in found)
        return compute(self, found, piece, *args)

    monkeypatch.setattr(drivers._FlaggedRuns, "compute", recorded)
    return runs


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("m", [2048, 4096])
def test_quiet_stretches_next_to_loud_ones_are_transformed_again(monkeypatch, m):
    # in blocks that also hold a loud stretch, long runs of quiet windows are
    # flagged; they are transformed again in a row of their own, and every
    # window stays as exact as by direct dots
    runs = record_runs(monkeypatch)
    x = corpus.make("bursty", 2 * config.SEGMENT_WINDOWS)
    kernel = np.random.default_rng(7).standard_normal(m)
    got = check_against_naive(x, kernel)
    assert len(runs) > 1
    np.testing.assert_allclose(got, sliding_cosine(x, kernel, method="direct"), rtol=0,
                               atol=tolerance(np.float64, m))
    covered = np.zeros(got.size, dtype=bool)
    for _, start, stop, _ in runs:
        covered[start:stop] = True
    chosen = np.flatnonzero(covered)[:: max(1, covered.sum() // 300)]
    np.testing.assert_allclose(got[chosen], reference(x, kernel, chosen), rtol=0,
                               atol=tolerance(np.float64, m))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("shorter", [False, True])
def test_runs_of_flagged_windows_keep_every_bit_promised(monkeypatch, shorter):
    # rows and kernels of a bank, power-of-two scaling (segments with
    # samples out of the safe range too), sign, thread count; the runs in
    # fft_length's blocks, and in the shorter ones that segments mixing loud
    # and quiet stretches take
    runs = record_runs(monkeypatch, shorter)
    x = np.stack([corpus.make("bursty", 2 * config.SEGMENT_WINDOWS, seed=s) for s in (1, 2)])
    kernels = np.random.default_rng(8).standard_normal((2, 2048))
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        base = sliding_cosine(x, kernels, method="fft")
        assert len({run[0] for run in runs}) == 2  # (in either row)
        short = transforms.short_fft_length(2047)
        assert {run[3] for run in runs} == ({short} if shorter else {transforms.fft_length(2047)})
        np.testing.assert_allclose(base, sliding_cosine(x, kernels, method="direct"), rtol=0,
                                   atol=tolerance(np.float64, 2048))
        # (scaled so that the quietest or loudest samples leave [SAFE_MIN,
        # SAFE_MAX], but few sums of squares the float64 range: those take a
        # slow path, and the bursts would hold many)
        assert np.min(np.abs(np.ldexp(x, -470))) < SAFE_MIN
        assert np.max(np.abs(np.ldexp(x, 470))) > SAFE_MAX
        check_bit_promises(x, kernels, base, (-470, 470))
    finally:
        numba.set_num_threads(saved)


@pytest.mark.usefixtures("fft_engine")
def test_segments_mixing_loud_and_quiet_stretches_take_shorter_blocks(monkeypatch):
    # speech: words next to exact-zero silences. Blocks of fft_length's
    # length mix many quiet windows with loud ones (flagged, to be computed
    # directly); blocks of about four spans mix far fewer, and the plan takes
    # them. Every promise holds as in the longer blocks.
    m = 256
    used = []
    transform = drivers._SegmentPlan.transform

    def recorded(self, *args):
        used.append(self.length.nfft)
        return transform(self, *args)

    monkeypatch.setattr(drivers._SegmentPlan, "transform", recorded)
    x = corpus.make("speech", 2 * config.SEGMENT_WINDOWS)
    kernel = np.random.default_rng(9).standard_normal(m)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        base = check_against_naive(x, kernel)
        short = transforms.short_fft_length(m - 1)
        assert short < transforms.fft_length(m - 1, single=True) and short in used
        np.testing.assert_allclose(base, sliding_cosine(x, kernel, method="direct"), rtol=0,
                                   atol=tolerance(np.float64, m))
        for shift in (-700, 600):
            np.testing.assert_array_equal(sliding_cosine(np.ldexp(x, shift), kernel,
                                                         method="fft"), base)
        np.testing.assert_array_equal(sliding_cosine(-x, kernel, method="fft"), -base)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        np.testing.assert_array_equal(sliding_cosine(x, kernel, method="fft"), base)
    finally:
        numba.set_num_threads(saved)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize(("name", "dtype", "center", "lengths"), [
    ("noise", np.float64, False, ["long"]),
    ("speech", np.float64, False, ["short"]),
    ("speech", np.float32, False, ["long"]),
    ("speech", np.float64, True, ["long", "short"]),
])
def test_segments_take_their_block_length_from_their_sums_of_squares(monkeypatch, name, dtype,
                                                                     center, lengths):
    # noise: no window would be flagged in the longer blocks, which are
    # planned alone; speech: the sums of squares show that they would flag
    # many, so only the shorter blocks are planned, except for a float32
    # result (its budget flags few) and centered windows, whose longer plan
    # is made first and tells
    m = 256
    recorder = PlanRecorder(monkeypatch)
    x = corpus.make(name, config.SEGMENT_WINDOWS + m - 1, dtype)
    sliding_cosine(x, np.random.default_rng(10).standard_normal(m).astype(dtype), method="fft",
                   center=center)
    named = {transforms.fft_length(m - 1, single=True): "long",
             transforms.short_fft_length(m - 1): "short"}
    assert [named[nfft] for nfft in recorder.lengths] == lengths


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("name", corpus.CLASSES)
def test_flag_bound_counts_at_least_the_windows_a_plan_flags(monkeypatch, name):
    # blocks.flag_bound, from the windows' sums of squares alone, against the
    # plans' own counts (before leaving loud samples out): one kernel, with
    # dilation, and of two channels
    checked = []
    plan = drivers._SegmentPlan.plan

    def recorded(self, piece, w0, w1, m, d, tile, sumsq, unsafe, direct_ns, center):
        cost = plan(self, piece, w0, w1, m, d, tile, sumsq, unsafe, direct_ns, center)
        length = self.length
        flagged = self.flagged_counts[:, : self.nblocks].sum()
        bound = blocks.flag_bound(sumsq, w1 - w0, length.step, length.nfft, length.even_share)
        checked.append(flagged > 0)
        assert bound >= flagged
        return cost

    monkeypatch.setattr(drivers._SegmentPlan, "plan", recorded)
    rng = np.random.default_rng(11)
    x = corpus.make(name, 2 * config.SEGMENT_WINDOWS)
    for m, dilation in ((200, 1), (1024, 1), (150, 3)):
        sliding_cosine(x, rng.standard_normal(m), dilation=dilation, method="fft")
    two = np.stack([x[: config.SEGMENT_WINDOWS], x[-config.SEGMENT_WINDOWS :]])
    sliding_cosine(two, rng.standard_normal((1, 2, 300)), method="fft")
    assert checked and (name in ("noise", "offset") or any(checked))


def test_runs_are_laid_side_by_side_in_the_order_of_their_sums():
    # two rows' runs in one row of their own: each window's samples and sum
    # of squares where gather_runs puts them (at the signal's position modulo
    # the kernel's reach, so that its sum of squares is summed in the same
    # order), and its cosines back where they came from
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 1, 500))
    span, chunk = 9, 10
    sumsq = rng.uniform(1, 2, (2, 500))
    runs = np.array([[1, 303, 343, 40, -5], [0, 21, 51, 30, 3]], dtype=np.int64)
    positions, windows = blocks.run_positions(runs, span, chunk)
    np.testing.assert_array_equal(positions, [3, 61])  # 3 + 40 + 9 = 52, then 61 = 21 mod 10
    assert windows == 61 + 30
    samples = np.full((1, 1, windows + span), np.nan)
    own = np.full((1, windows), np.nan)
    blocks.gather_runs(x, runs, positions, span, 10, sumsq, samples, own)
    np.testing.assert_array_equal(samples[0, 0, :3], 0.0)
    np.testing.assert_array_equal(samples[0, 0, 3:52], x[1, 0, 303 : 343 + span])
    np.testing.assert_array_equal(samples[0, 0, 52:61], 0.0)
    np.testing.assert_array_equal(samples[0, 0, 61:], x[0, 0, 21 : 51 + span])
    np.testing.assert_array_equal(own[0, :3], -1.0)  # no windows of the signal
    np.testing.assert_array_equal(own[0, 3:43], sumsq[1, 293:333])
    np.testing.assert_array_equal(own[0, 43:61], -1.0)
    np.testing.assert_array_equal(own[0, 61:], sumsq[0, 11:41])
    cosines = rng.standard_normal((1, 3, windows))
    out = np.zeros((2, 3, 600))
    blocks.scatter_runs(cosines, runs, positions, out, 7)
    np.testing.assert_array_equal(out[1, :, 310:350], cosines[0, :, 3:43])
    np.testing.assert_array_equal(out[0, :, 28:58], cosines[0, :, 61:])
    assert np.count_nonzero(out) == 3 * 70


@given(values=hnp.arrays(np.float64, st.integers(0, 70), elements=st.one_of(
           scalable_elements(np.float64), st.sampled_from([np.nan, np.inf, -np.inf]))),
       reference=scalable_elements(np.float64), shift=st.integers(-800, 800),
       below=st.one_of(st.just(np.inf), st.floats(0.0, 1e300)))
def test_the_plans_block_statistics_are_exact_and_free_of_scale(values, reference, shift, below):
    # the plan's passes keep 16 partial maxima, minima and sums (lanes): every
    # length of the tail, NaN and inf left out, against NumPy; the sum of the
    # squares under ``below`` (leave_out_loud's quiet energy) too
    big, total, small = blocks._block_stats(values, reference, 0, 0.0, 0.0, np.inf, below)
    finite = np.abs(values[np.isfinite(values)] - reference)
    positive = finite[finite > 0]
    quiet = finite[finite < below]
    assert big == (finite.max() if finite.size else 0.0)
    assert small == (positive.min() if positive.size else np.inf)
    assert abs(total - np.sum(quiet**2)) <= values.size * EPS64 * np.sum(quiet**2)
    # the samples and the reference times 2**shift, in units of 2**shift: the same bits
    assert blocks._block_stats(np.ldexp(values, shift), math.ldexp(reference, shift), shift,
                               0.0, 0.0, np.inf, below) == (big, total, small)


@given(sums=hnp.arrays(np.float64, st.integers(0, 70), elements=st.one_of(
           st.just(0.0), st.floats(1e-300, 1e300), st.sampled_from([np.nan, np.inf]))),
       expo=st.sampled_from([-600, -40, 0, 3, 600]), limit=st.floats(0.0, 1e12))
def test_the_plans_relative_sums_count_the_flagged_and_find_the_quietest(sums, expo, limit):
    relative = np.empty_like(sums)
    count, quietest = blocks._relative_sums(sums, expo, limit, relative)
    with np.errstate(over="ignore"):
        scaled = np.ldexp(sums, -2 * expo)
    # (a window quieter than the smallest float is flagged, not taken for zero)
    np.testing.assert_array_equal(relative, np.where((scaled == 0) & (sums > 0), 5e-324, scaled))
    assert count == np.count_nonzero((relative > 0) & (relative < limit))
    positive = relative[relative > 0]
    assert quietest == (positive.min() if positive.size else np.inf)


@given(values=hnp.arrays(np.float64, st.integers(0, 70), elements=st.one_of(
           st.floats(allow_nan=False), st.sampled_from([np.nan, -np.nan, 0.0, -0.0, 5e-324]))))
def test_the_least_positive_value_is_taken_from_the_bits_as_numpy_takes_it(values):
    # an integer minimum of the floats' bits: negative floats, -0.0 and -NaN
    # have the sign bit (negative ints), NaN and inf the largest positive ones
    positive = values[(values > 0) & np.isfinite(values)]
    assert blocks.least_positive(values) == (positive.min() if positive.size else np.inf)


def test_windows_across_two_runs_never_count_in_a_plan():
    # gather_runs marks them -1; in a segment with samples out of the safe
    # range (where windows whose sums left the float64 range are summed
    # again) they must stay unflagged and uncounted, as in a safe segment
    m, d, tile, step = 4, 1, 8, 8
    x = np.full((1, 1, 40), 1e-200)  # every square underflows: out of range
    sumsq = np.zeros((1, 37))
    sumsq[0, 8:16] = -1.0
    unsafe = np.ones((1, 5), dtype=bool)
    exponents = np.zeros((1, 5), dtype=np.int64)
    noise = np.ones((1, 5))
    relative = np.full((1, 37), -1.0)
    counts = np.zeros((1, 5), dtype=np.int64)
    quietest = np.full((1, 5), np.inf)
    blocks.relative_out_of_range(x, 0, 37, step, m, d, tile, sumsq, unsafe, 1.0, exponents, noise,
                                 relative, counts, quietest, False)
    np.testing.assert_array_equal(relative[0, 8:16], -1.0)  # left alone
    assert np.all(relative[0, :8] > 0) and counts[0, 1] == 0 and quietest[0, 1] == np.inf
    assert counts[0, 0] == 8  # the windows of the signal, far quieter than 1, flagged


def test_a_float32_result_allows_the_transform_a_float32_error():
    # float64 results demand a float64-exact dot; float32 ones only a small
    # part of float32's rounding, so far fewer windows are recomputed
    assert drivers.fft_error_budget(np.float32, 256, 1.0) > 1e4 * drivers.fft_error_budget(
        np.float64, 256, 1.0)
    assert drivers.fft_error_budget(np.float32, 256, 9.0) == pytest.approx(
        drivers.fft_error_budget(np.float32, 256, 1.0) / 9)
    assert drivers.fft_error_budget(np.float64, 256, 9.0) == drivers.fft_error_budget(
        np.float64, 256, 1.0)


# ---------------------------------------------------------------------------
# the corpus itself


def test_the_corpus_is_reproducible_and_of_the_dtype_asked():
    for name in corpus.CLASSES:
        a = corpus.make(name, 5_000, np.float32, seed=3)
        assert a.dtype == np.float32 and a.shape == (5_000,)
        np.testing.assert_array_equal(a, corpus.make(name, 5_000, np.float32, seed=3))
        assert np.all(np.isfinite(a))
    with pytest.raises(ValueError, match="unknown corpus class"):
        corpus.make("whistle", 10)


def test_each_class_has_its_character():
    n = 400_000
    bursty = corpus.make("bursty", n)
    levels = np.sqrt(np.convolve(bursty**2, np.ones(100) / 100, mode="valid"))
    assert levels.min() < 1e-2 and levels.max() > 1e2  # quiet and loud stretches
    events = corpus.make("events", n)
    assert np.median(np.abs(events)) < 1 and np.abs(events).max() > 100
    offset = corpus.make("offset", n)
    assert 9_900 < offset.min() and offset.max() < 10_100 and np.std(np.diff(offset)) > 0.5
    speech = corpus.make("speech", n)
    assert np.all(speech == np.rint(speech)) and np.abs(speech).max() <= 32768
    assert 0.05 < np.mean(speech == 0) < 0.9 and np.abs(speech).max() > 1000
    sparse = corpus.make("sparse", n)
    assert np.mean(sparse == 0) > 0.99 and np.abs(sparse).max() > 1


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_infinite_samples_take_no_rescaled_window_path(monkeypatch, method, center):
    """An inf squares to inf whatever the scaling, so its windows are NaN
    by the fast loops' own arithmetic: no tile is flagged for the scalar
    rescaled path (which took float64 signals of log10(power) with exact
    zeros, -inf every 1000th sample, 200 times noise's time)."""
    from cosim_np import windowed_norm
    from cosim_np._cpu import centered, sliding

    def flagged(*args, **kwargs):
        raise AssertionError("a tile was flagged out of range")

    monkeypatch.setattr(drivers, "_scaled_into_range", flagged)
    monkeypatch.setattr(sliding, "fft_fix_out_of_range", flagged)
    monkeypatch.setattr(centered, "fft_fix_out_of_range", flagged)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(3000)
    x[::997], x[500::997] = -np.inf, np.inf
    x[1234] = np.nan
    kernel = rng.standard_normal(100)
    reference = naive.sliding_pearson if center else naive.sliding_cosine_1d
    got = sliding_cosine(x, kernel, method=method, center=center)
    want = reference(x, kernel)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert 0 < np.isnan(got).sum() < got.size
    np.testing.assert_allclose(got, want, rtol=0, atol=naive_tolerance(kernel.size))
    norms = windowed_norm(x, 100, center=center)
    np.testing.assert_array_equal(np.isnan(norms) | np.isinf(norms), np.isnan(want))


def naive_tolerance(m):
    return 8 * (m + 4) * np.finfo(np.float64).eps
