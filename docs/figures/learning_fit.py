"""The figure of docs/learning.rst: ``python docs/figures/learning_fit.py``
writes docs/_static/learning_fit.png.

A kernel and its sharpness fitted with ``scipy.optimize.minimize(jac=True)``
on ``sliding_cosine_grad``, from a random start, to score high where a motif
occurs in noise and low elsewhere; the same fit as the page's example."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from cosim_np import find_matches, sliding_cosine, sliding_cosine_grad  # noqa: E402


def problem(seed=0, n=3000, m=24, copies=8):
    """A noisy signal holding ``copies`` of a motif at random gains, and the
    target score: 1 where a copy starts, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    motif = np.sin(np.linspace(0, 2 * np.pi, m)) * np.hanning(m)
    signal = 0.3 * rng.standard_normal(n)
    starts = np.sort(rng.choice(np.arange(50, n - 50, 100), size=copies, replace=False))
    for at in starts:
        signal[at : at + m] += rng.uniform(0.5, 3.0) * motif
    target = np.zeros(n - m + 1)
    target[starts] = 1.0
    return signal, motif, starts, target, rng.standard_normal(m)


def fit(signal, target, kernel):
    """Least squares on the sharpened scores, the copies weighted 50 to 1."""
    m = kernel.size
    weight = np.where(target > 0, 50.0, 1.0) / target.size

    def loss(theta):
        out = sliding_cosine(signal, theta[:m], sharpness=theta[m])
        grads = sliding_cosine_grad(signal, theta[:m], 2 * weight * (out - target),
                                    sharpness=theta[m])
        return (float(np.sum(weight * (out - target) ** 2)),
                np.append(grads.kernel, grads.sharpness))

    return minimize(loss, np.append(kernel, 1.0), jac=True, method="L-BFGS-B")


def main(path=pathlib.Path(__file__).parents[1] / "_static" / "learning_fit.png"):
    signal, motif, starts, target, start_kernel = problem()
    m = motif.size
    result = fit(signal, target, start_kernel)
    kernel, p = result.x[:m], result.x[m]
    found = find_matches(signal, kernel, sharpness=p, k=len(starts), sign="positive")

    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), layout="constrained")
    axes[0].plot(signal, lw=0.6, color="0.3")
    for at in starts:
        axes[0].axvspan(at, at + m, color="tab:orange", alpha=0.3, lw=0)
    axes[0].set_title("eight copies of a motif in noise, at random gains")
    axes[1].plot(sliding_cosine(signal, start_kernel), lw=0.6, color="0.6",
                 label="random start kernel, p = 1")
    axes[1].plot(sliding_cosine(signal, kernel, sharpness=p), lw=0.7, color="tab:green",
                 label=f"fitted kernel, p = {p:.2f}")
    axes[1].plot(found.index, found.score, "o", mfc="none", color="tab:red",
                 label="find_matches(k=8)")
    axes[1].set_ylabel("score")
    axes[1].legend(loc="lower left", frameon=False, ncol=3, fontsize=8)
    axes[1].set_title(f"scores ({result.nit} L-BFGS-B steps on sliding_cosine_grad)")
    for vector, style, label in ((motif, "-", "the motif"), (kernel, "-", "fitted kernel"),
                                 (start_kernel, ":", "random start")):
        axes[2].plot(vector / np.linalg.norm(vector), style, label=label)
    axes[2].set_title("unit kernels")
    axes[2].set_xlabel("tap")
    axes[2].legend(loc="upper right", frameon=False, fontsize=8)
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    print(main())
