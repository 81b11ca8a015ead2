"""The figure of docs/sliding.rst's section on centering:
``python docs/figures/center_offset.py`` writes docs/_static/center_offset.png.

A motif riding on a drifting baseline, found by ``center=True`` and lost by the
plain cosine, which the baseline dominates."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosim_np import find_matches, sliding_cosine  # noqa: E402


def main(path=pathlib.Path(__file__).parents[1] / "_static" / "center_offset.png"):
    rng = np.random.default_rng(1)
    motif = np.sin(np.linspace(0, 3 * np.pi, 80)) * np.hanning(80)
    n = 3000
    x = 0.15 * rng.standard_normal(n) + 20 + 6 * np.sin(np.linspace(0, 2 * np.pi, n))
    places = (400, 1500, 2400)
    for at, gain in zip(places, (2.0, -1.6, 3.0)):
        x[at : at + 80] += gain * motif
    plain = sliding_cosine(x, motif, mode="same")
    centered = sliding_cosine(x, motif, mode="same", center=True)
    found = find_matches(x, motif, k=3, mode="same", center=True)

    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True, layout="constrained")
    axes[0].plot(x, lw=0.7, color="0.3")
    axes[0].set_ylabel("signal")
    axes[0].set_title("a motif on a drifting baseline (three copies, one negated)")
    for at in places:
        axes[0].axvspan(at, at + 80, color="tab:orange", alpha=0.25, lw=0)
    axes[1].plot(plain, lw=0.7)
    axes[1].set_ylabel("cosine")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_title("center=False: the baseline dominates every window")
    axes[2].plot(centered, lw=0.7, color="tab:green")
    axes[2].plot(found.index, found.score, "o", mfc="none", color="tab:red",
                 label="find_matches(k=3, center=True)")
    axes[2].set_ylabel("Pearson")
    axes[2].set_ylim(-1.05, 1.05)
    axes[2].set_title("center=True: the copies stand out (a slope within a window remains)")
    axes[2].set_xlabel("sample")
    axes[2].legend(loc="lower left", frameon=False)
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    print(main())
