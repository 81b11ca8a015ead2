"""The figure of docs/images.rst: ``python docs/figures/images_matches.py``
writes docs/_static/images_matches.png.

A patch of the head cut from scikit-image's cameraman, its centered scores over a copy
of the photograph made darker and negated, and the three best matches
there (``find_matches(..., axis=(0, 1), center=True)``)."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from skimage import data  # noqa: E402

from cosim_np import find_matches, sliding_cosine  # noqa: E402


def main(path=pathlib.Path(__file__).parents[1] / "_static" / "images_matches.png"):
    photo = data.camera().astype(np.float32)
    patch = photo[80:130, 200:240].copy()
    changed = 200.0 - 0.5 * photo
    scores = sliding_cosine(changed, patch, axis=(0, 1), center=True)
    found = find_matches(changed, patch, axis=(0, 1), k=3, center=True)

    fig, axes = plt.subplots(1, 3, figsize=(11, 4), layout="constrained",
                             gridspec_kw=dict(width_ratios=(1, 3, 3)))
    axes[0].imshow(patch, cmap="gray")
    axes[0].set_title("template\n(50 x 40)")  # (one line was wider than its panel)
    picture = axes[1].imshow(scores, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[1].set_title("centered scores over the negated copy")
    fig.colorbar(picture, ax=axes[1], shrink=0.8)
    axes[2].imshow(changed, cmap="gray")
    axes[2].set_title("the three best matches (|s|)")
    for rank, ((i, j), score) in enumerate(zip(found.index, found.score)):
        axes[2].add_patch(Rectangle((j, i), patch.shape[1], patch.shape[0], fill=False,
                                    edgecolor="tab:orange" if rank else "tab:red", linewidth=2))
        axes[2].annotate(f"{score:+.2f}", (j, i - 6), fontsize=9,
                         bbox=dict(facecolor="white", edgecolor="none", pad=1))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
