"""Cross-checks against PyTorch (never a dependency of the package: the
``test`` extra installs it; where torch is missing the module is skipped,
which fails a CI run).

* ``cosine_similarity`` against ``torch.nn.functional.cosine_similarity``
  (broadcasting, tuple-free ``dim``, ``eps`` clamping);
* ``scaled_cosine_loss`` and its gradients against seed 002's
  ``get_dot_sim_loss`` run by torch autograd, and the z-score and
  ``weight_on="both"`` variants written the same way in torch.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cosim_np import cosine_similarity, scaled_cosine_loss

torch = pytest.importorskip("torch", reason="the cross-checks need PyTorch "
                                                   "(pip install torch==2.13.0)")
F = torch.nn.functional


def _torch_loss(emb, emb_rec, scaling, weight_on):
    def weight(x):
        n = torch.norm(x, p=2, dim=1)
        if scaling == "minmax":  # seed 002, get_dot_sim_loss
            z = (n - torch.min(n)) / (torch.max(n) - torch.min(n))
        else:  # the planned mean/std variant
            z = (n - torch.mean(n)) / torch.std(n)
        return F.sigmoid(z)

    cos = torch.sum(emb * emb_rec, dim=1) / (torch.norm(emb, dim=1) * torch.norm(emb_rec, dim=1))
    w = {"a": weight(emb), "b": weight(emb_rec), "both": weight(emb) * weight(emb_rec)}[weight_on]
    return 1 - torch.mean(w * cos)


@st.composite
def _broadcast_pair(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=4))
    ndim = len(shapes.result_shape)
    dim = draw(st.integers(-ndim, ndim - 1))
    elements = st.one_of(st.just(0.0), st.floats(-100, 100))
    a = draw(hnp.arrays(np.float64, shapes.input_shapes[0], elements=elements))
    b = draw(hnp.arrays(np.float64, shapes.input_shapes[1], elements=elements))
    return a, b, dim


@given(pair=_broadcast_pair(), eps=st.sampled_from([1e-8, 1e-3, 0.5, 10.0]))
def test_cosine_similarity_matches_torch(pair, eps):
    a, b, dim = pair
    want = F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=dim, eps=eps).numpy()
    got = cosine_similarity(a, b, axis=dim, eps=eps)
    assert np.shape(got) == want.shape
    length = np.broadcast_shapes(a.shape, b.shape)[dim]
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * (length + 4) * np.finfo(float).eps)


@given(
    rows=st.integers(2, 6), d=st.integers(1, 5),
    scaling=st.sampled_from(["minmax", "zscore"]),
    weight_on=st.sampled_from(["a", "b", "both"]), data=st.data(),
)
def test_loss_and_gradients_match_torch_autograd(rows, d, scaling, weight_on, data):
    elements = st.floats(-5, 5).filter(lambda value: abs(value) > 0.01)
    x = data.draw(hnp.arrays(np.float64, (rows, d), elements=elements))
    y = data.draw(hnp.arrays(np.float64, (rows, d), elements=elements))
    for n in (np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)):
        assume(np.ptp(n) > 1e-3)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y, requires_grad=True)
    loss_t = _torch_loss(tx, ty, scaling, weight_on)
    loss_t.backward()
    loss, gx, gy = scaled_cosine_loss(x, y, scaling=scaling, weight_on=weight_on, return_grad=True)
    tol = 1e-12 / min(np.linalg.norm(x, axis=1).min(), np.linalg.norm(y, axis=1).min(), 1.0)
    assert abs(loss - loss_t.item()) <= 1e-13
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=0, atol=tol * 100)
    np.testing.assert_allclose(gy, ty.grad.numpy(), rtol=0, atol=tol * 100)
