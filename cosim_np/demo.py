"""The seed-000 experiment: why a sliding *cosine* finds motifs that a plain
correlation (a 1-D convolution) misses or invents.

A signal holds five motifs, separated by silence:

A. exact match ``[1, 2, 3]``      B. negated ``[-1, -2, -3]``
C. downscaled ``[0.2, 0.4, 0.6]``  D. median ``[2, 2, 2]``
E. reversed ``[3, 2, 1]``

and is compared with the kernel ``[1, 2, 3]`` in 'causal' mode (output ``i``
is the window ending at ``i``, as in the seed's PyTorch function).
"""

import numpy as np
from scipy import signal as sps

from .matches import find_matches, plot_matches
from .sliding import sliding_cosine

KERNEL = np.array([1.0, 2.0, 3.0])
MOTIFS = (
    ("A", "exact match", [1.0, 2.0, 3.0]),
    ("B", "negated", [-1.0, -2.0, -3.0]),
    ("C", "downscaled", [0.2, 0.4, 0.6]),
    ("D", "median", [2.0, 2.0, 2.0]),
    ("E", "reversed", [3.0, 2.0, 1.0]),
)
GAP = 6
# The matches drawn: windows whose sharpened score reaches this (p = 9).
THRESHOLD = 0.5


def motif_signal():
    """The test signal and, for each motif, the slice of outputs whose
    causal window overlaps it."""
    pieces, regions, position = [np.zeros(GAP)], [], GAP
    for _, _, motif in MOTIFS:
        pieces += [np.asarray(motif), np.zeros(GAP)]
        regions.append(slice(position, position + len(motif) + len(KERNEL) - 1))
        position += len(motif) + GAP
    return np.concatenate(pieces), regions


def responses(signal):
    """Plain correlation and sliding cosine at sharpness 1 and 9, all causal."""
    correlation = sps.correlate(signal, KERNEL, mode="full")[: signal.size]
    return {
        "correlation": correlation,
        "cosine p=1": sliding_cosine(signal, KERNEL, mode="causal"),
        "cosine p=9": sliding_cosine(signal, KERNEL, mode="causal", sharpness=9.0),
    }


def peak(values):
    """The value of largest magnitude (keeping its sign)."""
    return values[np.argmax(np.abs(values))]


def table():
    """Rows ``(label, description, motif, {response: peak})``."""
    signal, regions = motif_signal()
    curves = responses(signal)
    return [
        (label, description, motif, {name: peak(curve[region]) for name, curve in curves.items()})
        for (label, description, motif), region in zip(MOTIFS, regions)
    ]


def format_table():
    rows = table()
    names = list(rows[0][3])
    head = f"{'motif':<34}" + "".join(f"{name:>14}" for name in names)
    lines = [f"kernel {KERNEL.tolist()}; peak response over each motif (signed)", head, "-" * len(head)]
    for label, description, motif, peaks in rows:
        name = f"{label} {description} {[float(v) for v in motif]}"
        lines.append(f"{name:<34}" + "".join(f"{peaks[n]:>14.4f}" for n in names))
    lines += [
        "",
        "Correlation rates the median D and the reversed E above the downscaled exact",
        "match C: it is neither scale nor sign invariant. The cosine gives exactly +1/-1",
        "to A, B and C whatever their scale and sign, and sharpness p=9 (exponent 81)",
        "suppresses everything that is not an exact match.",
    ]
    return "\n".join(lines)


def plot(path):
    """Write the four curves to ``path`` (needs matplotlib, the ``plot`` extra)."""
    try:  # (a Figure of its own, not pyplot's: the caller's backend and figures stay as they are)
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "--plot needs matplotlib, which is not installed; "
            "install it with: pip install 'cosim_np[plot]'"
        ) from None
    signal, regions = motif_signal()
    curves = responses(signal)
    fig = Figure(figsize=(9, 8))
    axes = fig.subplots(4, 1, sharex=True)
    # the signal with the matches at p = 9 (each matched window with the
    # kernel fitted over it, at its scale and sign) and their score track
    matches = find_matches(signal, KERNEL, mode="causal", sharpness=9.0, threshold=THRESHOLD)
    plot_matches(signal, matches, KERNEL, ax=(axes[0], axes[3]), mode="causal", sharpness=9.0,
                 threshold=THRESHOLD)
    panels = {"signal": axes[0], "correlation": axes[1], "cosine p=1": axes[2],
              "cosine p=9": axes[3]}
    # every curve at the start of its window, as plot_matches draws the
    # scores (causal output i is the window that ends at sample i)
    starts = np.arange(signal.size) - (KERNEL.size - 1)
    for name, ax in panels.items():
        if name in ("correlation", "cosine p=1"):
            ax.plot(starts, curves[name], drawstyle="steps-mid")
        ax.set_ylabel(name)
        ax.axhline(0, color="grey", lw=0.5)
        for (label, _, motif), region in zip(MOTIFS, regions):
            first = region.start  # the motif's first sample
            ax.axvspan(first - 0.5, first + len(motif) - 0.5, color="orange", alpha=0.12)
            if name == "signal":
                ax.text(first + (len(motif) - 1) / 2, 3.3, label, ha="center")
    axes[0].set_ylim(-3.6, 3.9)
    axes[-1].set_xlabel("sample (curves: the window starting here)")
    fig.suptitle("Sliding cosine similarity vs correlation, kernel [1, 2, 3]; "
                 f"matches at p=9 above {THRESHOLD}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
