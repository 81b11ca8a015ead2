"""Every tunable of cosim_np, named, in one place.

The drivers read these at call time (``config.NAME``), so a test or an
experiment can change one with ``monkeypatch.setattr(config, "NAME", ...)``.
The measurements behind each value are in ``benchmarks/RESULTS.md``
("Measurements behind the tunables"); a comment here says what the value
trades, not what it took on one machine.

Constants compiled into the Numba kernels (``CHAINS``, ``DIRECT_SUM_TAPS``,
``CHAIN_CHUNK``, ``RUN_GAP``, ``ZERO_CHUNK`` in ``_cpu/sliding.py``; ``SCATTER_COST``,
``MAX_LOUD_SHIFT``, ``LOUD_BOUND`` in ``_cpu/blocks.py``; ``SCREEN`` in
``_cpu/embedding.py``) stay beside their kernels: Numba's cache keys a
compiled kernel on its own file, so a value moved here would leave stale
kernels in the cache after an edit.
"""

# ---------------------------------------------------------------------------
# Sliding cosine, CPU: choosing the method

# method="auto" chooses by a cost model, in ns per output (fitted on one
# thread, float32, n = 10**6..10**7; ``bench_sliding.py --methods direct fft``):
#   direct: DIRECT_NS[0] (norms, finish) + DIRECT_NS[1] per product (K*C*m);
#   fft:    FFT_NS[0] + FFT_NS[1] per input channel (block copy, forward
#           transform) + FFT_NS[2] per kernel (product, inverse transform,
#           finish) + FFT_NS[3] per channel-kernel pair when C > 1.
# DIRECT_NS[1] is the direct dots' cost per product on the AVX-512 hosts of
# later sessions, where they cost 1.5 to 2.3 times the FFT path's at m = 200
# (benchmarks/RESULTS.md, "Measurements behind the tunables").
DIRECT_NS = (2.5, 0.06)
# The direct method's dots by the loops or as matrix products
# (``_cpu.products``), whichever these costs say is cheaper, ns per window
# (fitted on one thread, float32, n = 2*10**5, banks and multi-channel
# kernels; benchmarks/RESULTS.md, issue 17, session 16):
#   loops:    LOOP_NS[0] + LOOP_NS[1] per product (K*C*m);
#   products: PRODUCT_NS[0] + PRODUCT_NS[1] per tap laid out in a column
#             (C*m) + PRODUCT_NS[2] per product (BLAS).
LOOP_NS = (11.0, 0.118)
PRODUCT_NS = (17.8, 0.65, 0.078)
# How the direct method takes its dots: "auto" (by the cost model above),
# "loops" or "products" (for tests and experiments).
DIRECT_DOTS = "auto"
# Elements (float64) of the window columns of one product: enough windows
# that a product pays for its call, few enough that they stay in cache.
PRODUCT_ELEMENTS = 1 << 16
FFT_NS = (1.5, 3.0, 4.0, 1.0)
# The FFT path's fixed cost per call beyond the direct method's, ns (its
# Python planning, scratch arrays and the kernel's transforms): short signals
# take direct dots (fitted on one thread, n = 2000 .. 10**5, m = 256 .. 1024).
FFT_CALL_NS = 1.3e5
# Below this many taps per window (m * C) the direct method is used.
FFT_MIN_TAPS = 128
# The FFT path's cost per window at a block length other than fft_length's:
# FFT_FLOPS_SHARE of FFT_NS grows with the transforms' operations per window
# (the rest, the sums of squares, plan and finish, does not), plus
# FFT_BLOCK_NS a block (calls, the plan's passes per block).
FFT_FLOPS_SHARE = 0.5
FFT_BLOCK_NS = 350.0

# ---------------------------------------------------------------------------
# Sliding cosine, CPU: tiles, segments and threads

# Sliding over several axes (``_cpu.spatial_driver``): windows along the
# first sliding axis per band, at least.  A band's rows of window sums stay
# in cache between the passes and the dots; fewer rows pay more per-band
# overheads, more fall out of cache.
SPATIAL_BAND_ROWS = 64
# ... and at least this many windows a band: narrow images take taller bands
# (each band costs some tens of microseconds in Python).
SPATIAL_BAND_WINDOWS = 1 << 15
# A band's window sums are taken over the samples of at most this many
# (batch indices in blocks; at least one): their float64 passes hold a few
# arrays of that many elements, whatever the batch.
SPATIAL_BAND_SAMPLES = 1 << 18
# Windows of at most this many taps along an axis that is not the last are
# summed tap by tap (as exact as the two blocked scans, and cheaper there);
# along the last axis, up to SPATIAL_ROW_DIRECT_TAPS, four taps a pass over
# the row (cheaper than summing runs of 1, 2, 4 ... taps).
SPATIAL_DIRECT_TAPS = 4
SPATIAL_ROW_DIRECT_TAPS = 16
# sliding_cosine_grad over several axes lays runs of output rows out as the
# stacks of rows they read: at most this many float64 elements at a time.
SPATIAL_GRAD_ELEMENTS = 1 << 22
# method="auto" over several axes takes the dots by FFT from this many taps
# per window and kernel (C_in * m_1 * ... * m_r) on.
SPATIAL_FFT_TAPS = 256
# Rows of a band's FFT block along the first sliding axis, at least (and at
# least four spans of the kernel).
SPATIAL_FFT_ROWS = 256

# Windows per tile, at least; enough chunks per tile that the lock-step scans
# of the sums of squares have independent chains to overlap.
TILE_TARGET = 4096
MIN_CHUNKS_PER_TILE = 8
# One-channel kernels of at most this many taps get their window sums of
# squares summed tap by tap, fused with the dots: the squares then cost one
# multiply-add on loads made anyway, no more than the blocked scans up to
# this length, where method="auto" takes the FFT (FFT_MIN_TAPS).
FUSED_TAPS = 127
# Tiles of at most this many windows (rows of a window or a few) get each
# window's sum of squares and dots on its own, in the order of the scans and
# the tile's dots: their passes over whole chunks and taps cost more there.
FEW_WINDOWS = 8
# Tiles of at most this many chunks of window starts (``m * d`` each) are
# scanned chain by chain however short their chunks: the lanes' passes over
# every offset of a chunk cost more than they save where a row holds few.
FEW_CHUNKS = 16
# Below this many windows per thread (of one row, one channel and one kernel;
# a batch, channels and kernels count as that many), starting threads costs
# more than it saves.
MIN_WINDOWS_PER_THREAD = 1 << 16
# Values public ``sharpen`` converts to float64 and raises to the power at a
# time, for float32 results (its loops' scratch stays in the first cache).
SHARPEN_BLOCK = 1024
# Windows per FFT segment (divided among the kernels of a bank): their sums
# of squares, block plan and dots are kept at once.
SEGMENT_WINDOWS = 1 << 18
# Per-thread scratch arrays larger than this are not kept between calls (the
# FFT path's dots of a segment take 2 to 3 MiB per signal row; an image's FFT
# band, 2048 pixels wide, 4 to 11 MiB an array); a thread keeps a set for
# each FFT length it used (docs/performance.rst) ...
KEEP_BYTES = 1 << 24
# ... and at most this many bytes of them in all, per thread (the least
# recently used let go first): a 2048 x 2048 image's FFT calls keep 40 to 70
# MiB.
KEEP_TOTAL_BYTES = 1 << 27

# ---------------------------------------------------------------------------
# Sliding cosine, CPU: the FFT path's transforms

# Which library transforms: "auto" (ducc0 if importable, else NumPy), "ducc0"
# or "numpy".  Results of the two agree to rounding, not bit for bit.
FFT_ENGINE = "auto"
# Transformed samples per chunk of blocks, per library: bounds the temporary
# memory and keeps a chunk's blocks, spectra and outputs in the L2 cache.
CHUNK_SAMPLES = {"ducc0": 1 << 16, "numpy": 1 << 17}
# Longest block transformed by default: pocketfft transforms several rows at
# once, and beyond 2**14 float64 samples their working set leaves the L2
# cache (a 2**15 block then costs several times more per output).
MAX_CACHED_FFT = 1 << 14
# Blocks of at most this many samples transform in cache: no block is longer
# while SHORT_BLOCK_SPANS spans fit in it (longer ones cost as much per output
# on noise and mix more quiet windows with loud stretches); a single
# one-channel kernel's blocks reach it while 16 spans fit in it, for spans of
# at least SINGLE_KERNEL_MIN_SPAN samples (shorter kernels keep 8 spans: a
# longer block raises the FFT's error bound against a short window's norm,
# and more windows would be recomputed directly).
CACHED_FFT = 1 << 12
SINGLE_KERNEL_MIN_SPAN = 127

# ---------------------------------------------------------------------------
# Sliding cosine, CPU: the FFT path's plan on signals with loud and quiet
# stretches

# A segment's plan that costs this much more than transforms alone would (on
# noise it costs that; where loud and quiet stretches mix, far more) is
# planned again: with its loud samples left out of the transforms, and its
# runs of flagged windows in blocks of their own.
REPLAN_AFTER = 0.05
# ... when the transforms, planned ideally, would save at least this share of
# all-direct dots (not for kernels just long enough for the FFT to pay).
REPLAN_GAIN = 0.1
# A segment whose best plan costs more than this share of all-direct dots
# gets them all directly: below the model's accuracy, the transforms do not
# pay for the plan's own passes.
FFT_MARGIN = 0.9
# A run of flagged windows (quiet ones next to a loud stretch) is transformed
# again where that costs at most this share of its direct dots ...
RUN_SHARE = 0.5
# ... for kernels long enough that a direct dot costs at least this many
# transformed ones (for shorter ones, looking for the runs cost as much as
# they saved, measured on the corpus) ...
RUN_MIN_RATIO = 6.0
# ... and where the runs of a segment save more than this, in ns: the fixed
# cost of planning and transforming them (Python calls).
RUNS_CALL_NS = 3e5
# A segment whose plan in blocks of fft_length costs more than REPLAN_AFTER
# over its transforms is also planned in blocks of about this many spans
# (``_cpu.fft.short_fft_length``), which mix fewer quiet windows with loud
# ones, and takes the cheaper plan.
SHORT_BLOCK_SPANS = 4

# ---------------------------------------------------------------------------
# Embeddings, CPU: tiles of BLAS products

# Working memory of the tiled functions when ``max_memory`` is not given.
DEFAULT_MAX_MEMORY = 256 * 2**20
# Tile of the one-stream layout (multi-threaded BLAS calls): a 16 MiB float32
# score tile.
ONE_STREAM_ROWS, ONE_STREAM_COLS = 1024, 4096
# Tile shape of the per-thread streams: a 2 MiB float32 score tile stays in a
# core's L2/L3 cache between the BLAS call and the pass that reads it.
STREAM_ROWS, STREAM_COLS = 512, 1024
# A selection that reads each tile once (the top-k merge) gains from taller
# tiles, whose every corpus panel BLAS packs once for more rows; tiles that
# are written out, mirrored or cast (pairwise_cosine) are best kept small.
TALL_FACTOR = 4
# Fewer rows than this per thread and the threads cost more than they save.
MIN_ROWS_PER_STREAM = 64
# Products of fewer multiply-adds take well under a millisecond: not worth
# switching the BLAS threads for.
MIN_STREAM_WORK = 1 << 22
# Row-wise passes over a tile (normalising, clipping) give each thread at
# least this many rows: fewer, and starting the thread costs more than it saves.
MIN_ROWS_PER_SPLIT = 64
# Straight into a memmap result, the rows of a block are written in one pass
# of at most this many bytes, so that pages go out in order.
MEMMAP_BLOCK_BYTES = 1 << 26
# cosine_similarity splits its pairs of vectors among threads only where each
# thread gets at least this many components: fewer, and starting the thread
# costs more than it saves.
MIN_COMPONENTS_PER_THREAD = 1 << 17
# and computes this many cosines (float64) at a time before it stores them in
# the result's dtype: no N x M arrays besides the result.
COSINES_AT_ONCE = 1 << 14

# ---------------------------------------------------------------------------
# Finding matches

# Windows per tile of find_matches (every signal row at once), at most: the
# scores of a tile are computed, then scanned for candidates while they are
# in the caches; max_memory may make tiles shorter.
MATCH_TILE = 1 << 18
# Candidates kept per signal row while scanning for the best k, at most (the
# exact pool, k * kernels * (exclusion + 1), where smaller): a larger pool
# costs memory, a smaller one may cost a second scan (rows whose pool keeps
# fewer than k matches although candidates were left out).
MATCH_POOL = 1 << 16
# The tiles are scored and scanned in runs taken in turn by the threads, this
# many per thread: more runs balance the threads' loads better, each costs a
# border to judge and a pool to merge.
MATCH_RUNS_PER_THREAD = 4
# Over several axes with k: the greedy selection first sorts this many times
# k of the best candidates, eight times more at each further try (most
# calls need one: the k matches' exclusion zones hold few of the best).
MATCH_CANDIDATES_PER_K = 64
# ... and finds the candidates a block of rows at a time, each block with
# room for this many (32 bytes each), or for as many as half its
# max_memory holds: what it allocates beyond the candidates found.
MATCH_CANDIDATE_ROOM = 1 << 22

# sliding_cosine_grad: the elements (float64, every tap and channel of each
# window) of a tile of windows in the matrix products of the backward: a
# tile's columns and the products' results stay in cache.  Rows shorter than
# a tile go several to a tile.
GRAD_TILE_ELEMENTS = 1 << 17

# The command line reads a .npy file larger than this memory-mapped (a signal
# larger than memory), a smaller one into memory: a memory-mapped array is
# read-only, and Numba compiles read-only arrays' kernels apart from the
# writable ones (``python -m cosim_np compile`` compiles the common calls'
# for both).
CLI_MEMORY_MAP_BYTES = 1 << 28
