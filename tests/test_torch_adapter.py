"""``cosim_np.torch``: the sliding cosine as a ``torch.autograd.Function``
and the ``SharpenedCosine1d`` layer (CI installs the CPU build of PyTorch)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosim_np import demo, sharpen, sliding_cosine  # noqa: E402
from cosim_np import torch as adapter  # noqa: E402


def tensor(array, requires_grad=True):
    return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


@pytest.mark.parametrize("options", [
    dict(),
    dict(mode="same", dilation=2),
    dict(mode="causal", center=True),
    dict(mode="full", fill=-1.0),
    dict(mode="same", stride=3),
])
@pytest.mark.parametrize("shape", ["one", "bank", "channels"])
def test_gradcheck_of_the_function(options, shape):
    rng = np.random.default_rng(1)
    if shape == "one":
        x, k = rng.standard_normal(12), rng.standard_normal(3)
    elif shape == "bank":
        x, k = rng.standard_normal((2, 12)), rng.standard_normal((2, 3))
    else:
        x, k = rng.standard_normal((2, 12)), rng.standard_normal((3, 2, 3))
    inputs = (tensor(x), tensor(k), tensor(1.3), tensor(0.2))

    def function(signal, kernel, sharpness, noise_floor):
        return adapter.sliding_cosine(signal, kernel, sharpness, noise_floor, **options)

    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
    out = function(*inputs)
    np.testing.assert_array_equal(out.detach().numpy(), sliding_cosine(
        x, k, sharpness=1.3, noise_floor=0.2, **options))


def test_numbers_for_sharpness_and_noise_floor_get_no_gradient():
    rng = np.random.default_rng(2)
    x, k = tensor(rng.standard_normal(20)), tensor(rng.standard_normal(4))
    adapter.sliding_cosine(x, k, 1.5, 0.0, mode="same").sum().backward()
    assert x.grad.shape == x.shape and k.grad.shape == k.shape


def test_cpu_tensors_go_through_numpy_without_copies(monkeypatch):
    """The forward reads the tensor's own memory (a NumPy view of it)."""
    seen = []
    real = adapter._sliding_cosine

    def spy(x, k, **options):
        seen.append(x)
        return real(x, k, **options)

    monkeypatch.setattr(adapter, "_sliding_cosine", spy)
    x = torch.randn(50, dtype=torch.float64)
    adapter.sliding_cosine(x, torch.randn(4, dtype=torch.float64))
    assert np.shares_memory(seen[0], x.numpy())


def test_float32_tensors_stay_float32():
    x = torch.randn(2, 30, requires_grad=True)
    k = torch.randn(5, requires_grad=True)
    out = adapter.sliding_cosine(x, k, mode="same")
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad.dtype == k.grad.dtype == torch.float32


def test_a_tensor_neither_on_the_cpu_nor_cuda_says_what_to_do():
    with pytest.raises(NotImplementedError, match=r"\.cpu\(\) or \.cuda\(\)"):
        adapter.sliding_cosine(torch.empty(10, device="meta"), torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="one device"):
        adapter.sliding_cosine(torch.empty(10, device="meta"), torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sharpening_of_cuda_tensors_is_that_of_cpu_tensors(dtype):
    """CUDA tensors are sharpened by torch's operations (``_sharpen_tensor``
    and its backward), CPU tensors by cosim_np's kernels: run on CPU tensors,
    the two agree, the conventions at ``s = 0`` and NaN included."""
    rng = np.random.default_rng(5)
    s = rng.uniform(-1, 1, (3, 4, 50))
    s[0, 0, :3] = [0.0, -0.0, np.nan]
    s[1, 2, 7] = 1e-30
    rows = torch.tensor(s, dtype=dtype)
    exponents = torch.tensor([0.49, 1.0, 2.89, 6.25], dtype=torch.float64)
    g = torch.tensor(rng.standard_normal(s.shape), dtype=dtype)
    got = adapter._sharpen_tensor(rows, exponents)
    want = np.array(rows.numpy())
    adapter.drivers.sharpen_rows(want, exponents.numpy())
    tol = dict(rtol=2e-7, atol=1e-38) if dtype == torch.float32 else dict(rtol=1e-14, atol=0)
    np.testing.assert_allclose(got.numpy(), want, **tol)
    assert got.dtype == dtype
    grad, log_sums = adapter._sharpen_tensor_grad(rows, got, g, exponents)
    grad = grad.to(dtype)  # (as the backward delivers it)
    want_grad, want_logs = adapter.drivers.sharpen_rows_grad(
        rows.numpy(), want.astype(rows.numpy().dtype), g.numpy(), exponents.numpy(), True)
    np.testing.assert_array_equal(np.isnan(grad.numpy()), np.isnan(want_grad))
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-6 if dtype == torch.float32
                               else 1e-13, atol=0)
    assert grad[0, 0, 0] == grad[0, 0, 1] == 0.0  # P = 0.49 at s = 0
    np.testing.assert_allclose(log_sums.numpy(), want_logs, rtol=1e-6 if dtype == torch.float32
                               else 1e-13)


def test_a_nan_score_stays_nan_at_sharpness_zero_on_either_path():
    """``p = 0``: ``sign(s) |s| ** 0`` is ``sign(s)``, NaN for NaN (torch's
    ``sign(NaN)`` is 0 and ``NaN ** 0`` 1: the CUDA path gave 0)."""
    rows = torch.tensor([[[np.nan, 0.5, -0.5, 0.0]]], dtype=torch.float64)
    exponents = torch.zeros(1, dtype=torch.float64)
    want = np.array(rows.numpy())
    adapter.drivers.sharpen_rows(want, exponents.numpy())
    got = adapter._sharpen_tensor(rows, exponents).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[0, 0, 0]) and got[0, 0, 1:3].tolist() == [1.0, -1.0]


def test_under_torch_compile_the_adapter_runs_as_it_does_eagerly():
    """``torch.compile`` of code that calls the adapter: its calls run
    eagerly (a graph break), with the eager results and gradients (TorchDynamo
    traced the CPU tensors' NumPy views as tensors, and the call went to the
    GPU backend: "needs an NVIDIA GPU")."""
    torch.manual_seed(3)
    x = torch.randn(2, 30, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, dtype=torch.float64)
    compiled = torch.compile(lambda x, k: adapter.sliding_cosine(x, k, sharpness=1.5) * 2.0,
                             backend="eager")
    got = compiled(x, k)
    (grad,) = torch.autograd.grad(got.sum(), x)
    want = adapter.sliding_cosine(x, k, sharpness=1.5) * 2.0
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    assert torch.equal(got, want) and torch.equal(grad, want_grad)
    layer = adapter.SharpenedCosine1d(2, 3, 5, dtype=torch.float64)
    signal = torch.randn(4, 2, 40, dtype=torch.float64)
    assert torch.equal(torch.compile(layer, backend="eager")(signal), layer(signal))


@pytest.mark.parametrize("layer_type", ["1d", "2d"])
def test_float16_layers_sharpen_in_float32_and_return_float16(layer_type):
    """float16 layers (``dtype=torch.float16`` or ``.half()``) as float16
    calls of cosim_np: computed in float32, rounded to float16 (the
    sharpening's kernels have no float16: it raised NotImplementedError)."""
    torch.manual_seed(4)
    if layer_type == "1d":
        layer, x = adapter.SharpenedCosine1d(2, 3, 3, p_init=1.3), torch.randn(2, 2, 30)
    else:
        layer, x = adapter.SharpenedCosine2d(2, 3, 3, p_init=1.3), torch.randn(2, 2, 9, 8)
    want = layer(x)
    half = layer.half()
    got = half(x.half())
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.float().detach().numpy(), want.detach().numpy(),
                               rtol=0, atol=4e-3)
    got.float().sum().backward()
    assert half.p.grad.dtype == torch.float16 and torch.isfinite(half.p.grad).all()
    assert torch.isfinite(half.weight.grad).all()


def test_float16_layers_differentiate_small_sharpened_scores_from_their_digits():
    """A float16 layer's sharpening took ``|s|**(P-1)`` as ``out / s`` from
    its float16 output, which keeps a few bits where ``|s|**P`` is below
    float16's smallest normal number: the signal's gradient 9.5% off here
    (an exploratory test).  It takes the float32 powers instead."""
    half = adapter.SharpenedCosine1d(1, 1, 2, p_init=1.7, q_init=0.0, dtype=torch.float16)
    with torch.no_grad():
        half.weight.copy_(torch.tensor([[[1.0, 0.0]]]))
    wide = adapter.SharpenedCosine1d(1, 1, 2, dtype=torch.float64)
    wide.load_state_dict({name: value.double() for name, value in half.state_dict().items()})
    x = torch.tensor([[[0.0039, 1.0]]], dtype=torch.float16, requires_grad=True)  # s about 0.0039
    x_wide = x.detach().double().requires_grad_()
    out = half(x)
    assert 0 < out.item() < 6.1e-5  # (a float16 subnormal)
    (out * 1024).sum().backward()
    (wide(x_wide) * 1024).sum().backward()
    np.testing.assert_allclose(x.grad.double().numpy(), x_wide.grad.numpy(), rtol=2e-3)


def test_bfloat16_tensors_are_refused_by_name():
    x = torch.randn(2, 20).to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"signal is a bfloat16 tensor.*\.float\(\)"):
        adapter.sliding_cosine(x, torch.randn(3))
    with pytest.raises(TypeError, match="kernel is a bfloat16 tensor"):
        adapter.sliding_cosine(x.float(), torch.randn(3).to(torch.bfloat16))


# --- the layer


def test_the_layer_is_the_sliding_cosine_with_each_channel_sharpened():
    torch.manual_seed(0)
    layer = adapter.SharpenedCosine1d(3, 4, 5, dilation=2, padding="same", q_init=0.3,
                                      dtype=torch.float64)
    with torch.no_grad():
        layer.p.copy_(torch.tensor([0.5, 1.0, 1.7, 3.0], dtype=torch.float64))
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    got = layer(x).detach().numpy()
    weight = layer.weight.detach().numpy()
    for o, p in enumerate([0.5, 1.0, 1.7, 3.0]):
        want = sliding_cosine(x.numpy(), weight[o : o + 1], sharpness=p, noise_floor=0.09,
                              dilation=2, mode="same")
        np.testing.assert_allclose(got[:, o], want[:, 0], rtol=1e-13, atol=1e-15)
    assert "3, 4, kernel_size=5" in repr(layer)


def test_a_float32_layer_sharpens_to_float32_rounding():
    """float32 scores take the vectorised powers of ``_cpu.powers``: within a
    unit of float32 rounding of ``sharpen`` of the same float32 scores (the
    layer sharpens the rounded cosines, per channel), and their gradients
    those of float64 scores to float32 accuracy."""
    torch.manual_seed(3)
    layer = adapter.SharpenedCosine1d(2, 3, 5, q_init=0.2)
    with torch.no_grad():
        layer.p.copy_(torch.tensor([0.3, 1.0, 2.5]))
    x = torch.randn(2, 2, 300)
    got = layer(x).detach().numpy()
    # the cosines the layer sharpens
    cosines = adapter.sliding_cosine(x, layer.weight, 1.0, layer.q * layer.q).detach().numpy()
    for o in range(3):
        want = sharpen(cosines[:, o], float(layer.p[o].detach()))
        units = np.abs(got[:, o].view(np.int32).astype(np.int64)
                       - want.view(np.int32).astype(np.int64))
        assert np.max(units) <= 1
    wide = adapter.SharpenedCosine1d(2, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        for mine, theirs in zip(wide.parameters(), layer.parameters()):
            mine.copy_(theirs.double())
    for model, data in ((layer, x), (wide, x.double())):
        model.zero_grad()
        model(data).pow(2).sum().backward()
    for narrow, precise in zip(layer.parameters(), wide.parameters()):
        np.testing.assert_allclose(narrow.grad.numpy(), precise.grad.numpy(), rtol=1e-3,
                                   atol=1e-3 * float(precise.grad.abs().max()))


def test_gradcheck_of_the_layer():
    torch.manual_seed(1)
    layer = adapter.SharpenedCosine1d(2, 3, 4, padding="causal", q_init=0.5, center=True,
                                      dtype=torch.float64)
    x = torch.randn(2, 2, 15, dtype=torch.float64, requires_grad=True)
    weight, p, q = layer.weight, layer.p, layer.q

    def function(x, weight, p, q):
        s = adapter.sliding_cosine(x, weight, 1.0, q * q, mode="causal", center=True)
        return adapter._Sharpen.apply(s, p[:, None])

    with torch.no_grad():
        p.copy_(torch.tensor([0.8, 1.0, 1.6], dtype=torch.float64))
    assert torch.autograd.gradcheck(function, (x, weight, p, q), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_sharpening_a_zero_score_has_finite_gradients():
    """torch's own ``|s| ** P`` gives NaN (0 * inf) at ``s = 0`` with ``P < 1``;
    the layer's sharpening takes the convention of ``sliding_cosine_grad``."""
    s = torch.tensor([0.0, 0.5, -0.25], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    adapter._Sharpen.apply(s, p).sum().backward()
    assert torch.all(torch.isfinite(s.grad)) and torch.isfinite(p.grad).all()
    assert s.grad[0] == 0.0
    naive_s = s.detach().clone().requires_grad_()
    naive_p = p.detach().clone().requires_grad_()
    (torch.sign(naive_s) * naive_s.abs() ** (naive_p**2)).sum().backward()
    assert not torch.all(torch.isfinite(naive_s.grad))  # what the convention avoids
    np.testing.assert_allclose(s.grad[1:].numpy(), naive_s.grad[1:].numpy(), rtol=1e-14)


def test_training_on_the_seed_motifs():
    """A one-kernel layer, from a random kernel and p = 1, learns to score +1
    at the exact and the downscaled motif, -1 at the negated one and 0
    elsewhere (the median and the reversed motif included): 300 Adam steps
    take the mean squared error from about 0.2 below 0.01."""
    signal, regions = demo.motif_signal()
    target = np.zeros(signal.size)
    for (label, _, motif), region in zip(demo.MOTIFS, regions):
        target[region.start + len(motif) - 1] = {"A": 1.0, "B": -1.0, "C": 1.0}.get(label, 0.0)
    torch.manual_seed(0)
    layer = adapter.SharpenedCosine1d(1, 1, 3, padding="causal", dtype=torch.float64)
    x, y = torch.tensor(signal[None, None]), torch.tensor(target[None, None])
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(300):
        optimiser.zero_grad()
        loss = ((layer(x) - y) ** 2).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 0.1 and losses[-1] < 0.01
    assert all(np.isfinite(losses))
    kernel = layer.weight.detach().numpy().ravel()
    assert np.corrcoef(kernel, demo.KERNEL)[0, 1] > 0.95


def test_the_2d_layer_is_the_sliding_cosine_over_two_axes_with_each_channel_sharpened():
    torch.manual_seed(4)
    layer = adapter.SharpenedCosine2d(3, 4, (3, 2), dilation=(1, 2), stride=(2, 1),
                                      padding="same", q_init=0.3, dtype=torch.float64)
    with torch.no_grad():
        layer.p.copy_(torch.tensor([0.5, 1.0, 1.7, 3.0], dtype=torch.float64))
    x = torch.randn(2, 3, 12, 13, dtype=torch.float64)
    got = layer(x).detach().numpy()
    weight = layer.weight.detach().numpy()
    for o, p in enumerate([0.5, 1.0, 1.7, 3.0]):
        want = sliding_cosine(x.numpy(), weight[o : o + 1], sharpness=p, noise_floor=0.09,
                              dilation=(1, 2), stride=(2, 1), mode="same", axis=(-2, -1))
        np.testing.assert_allclose(got[:, o], want[:, 0], rtol=1e-13, atol=1e-15)
    assert "3, 4, kernel_size=(3, 2)" in repr(layer)


def test_gradcheck_of_the_2d_layer():
    torch.manual_seed(5)
    layer = adapter.SharpenedCosine2d(2, 3, 3, q_init=0.5, center=True, dtype=torch.float64)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        layer.p.copy_(torch.tensor([0.8, 1.0, 1.6], dtype=torch.float64))

    def function(x, weight, p, q):
        s = adapter.sliding_cosine(x, weight, 1.0, q * q, center=True, axis=(-2, -1))
        rows = s.reshape(s.shape[0], s.shape[1], -1)
        return adapter._Sharpen.apply(rows, p[:, None])

    assert torch.autograd.gradcheck(function, (x, layer.weight, layer.p, layer.q), eps=1e-6,
                                    atol=1e-5, rtol=1e-4)


def test_integer_signals_give_float64_cosines_and_kernel_gradients():
    """An integer tensor is a signal as cosim_np takes it (float64 cosines),
    not truncated to its own dtype; the kernel still gets its gradient."""
    signal = torch.arange(20) % 7
    kernel = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    out = adapter.sliding_cosine(signal, kernel)
    want = sliding_cosine(signal.numpy(), kernel.detach().numpy())
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.detach().numpy(), want)
    out.sum().backward()
    assert kernel.grad is not None and torch.all(torch.isfinite(kernel.grad))


def test_arrays_that_are_not_tensors_are_refused_by_name():
    kernel = torch.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="signal must be a torch.Tensor .*got ndarray"):
        adapter.sliding_cosine(np.arange(20.0), kernel)
    with pytest.raises(TypeError, match="kernel must be a torch.Tensor .*got list"):
        adapter.sliding_cosine(torch.arange(20.0), [1.0, 2.0])


def test_options_and_scalars_that_do_not_apply_are_refused_by_name():
    """``out`` and ``backend`` (the forward took them; the backward failed),
    and a sharpness or noise floor that is not one number."""
    x, kernel = torch.arange(20.0), torch.tensor([1.0, 2.0])
    for option in (dict(out=np.empty(19)), dict(backend="cpu"), dict(padding="same")):
        with pytest.raises(TypeError, match=f"got {next(iter(option))}"):
            adapter.sliding_cosine(x, kernel, **option)
    for name in ("sharpness", "noise_floor"):
        for bad in (torch.tensor([1.0, 2.0]), "abc", None):
            with pytest.raises(TypeError, match=f"{name} must be a number or a one-element tensor"):
                adapter.sliding_cosine(x, kernel, **{name: bad})


def test_the_gradients_are_not_differentiated_again_silently():
    """A second backward through the gradients (a gradient penalty) raises,
    instead of dropping the cosine's part."""
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, dtype=torch.float64, requires_grad=True)
    loss = adapter.sliding_cosine(x, k, 1.5).sum() + (x**3).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="not differentiable again"):
        torch.autograd.grad((gx**2).sum(), k, allow_unused=True)
    layer = adapter.SharpenedCosine1d(1, 2, 3, dtype=torch.float64)
    signal = torch.randn(1, 1, 20, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(layer(signal).sum(), signal, create_graph=True)
    for parameter in (layer.p, layer.weight):
        with pytest.raises(RuntimeError, match="not differentiable again"):
            torch.autograd.grad(gx.sum(), parameter, allow_unused=True, retain_graph=True)


@pytest.mark.parametrize("layer_type, unbatched", [("1d", (2, 30)), ("2d", (2, 9, 8))])
def test_layers_take_mode_or_padding_and_unbatched_inputs(layer_type, unbatched):
    """The mode by cosim_np's name or PyTorch's; ``kernel`` is ``weight``;
    an unbatched input as PyTorch's convolutions take it; other shapes
    refused naming the one expected."""
    layer_class = adapter.SharpenedCosine1d if layer_type == "1d" else adapter.SharpenedCosine2d
    torch.manual_seed(5)
    layer = layer_class(2, 3, 3, mode="same", dtype=torch.float64)
    assert layer.kernel is layer.weight and "mode='same'" in repr(layer)
    twin = layer_class(2, 3, 3, padding="same", dtype=torch.float64)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(unbatched, dtype=torch.float64)
    np.testing.assert_array_equal(layer(x).detach().numpy(), twin(x[None]).detach().numpy()[0])
    with pytest.raises(ValueError, match="name the layer's mode twice"):
        layer_class(2, 3, 3, mode="same", padding="valid")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, "):
        layer(torch.randn((3,) + unbatched[1:], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, "):
        layer(x[0])


@pytest.mark.parametrize("make, error, message", [
    (lambda: adapter.SharpenedCosine1d(1, 1, 5, padding=0), TypeError, "not PyTorch's numbers"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 5, mode="bogus"), ValueError, "mode must be one of"),
    (lambda: adapter.SharpenedCosine2d(1, 1, 3, mode="causal"), ValueError, "mode must be one of"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 0), ValueError, "kernel_size must be an integer >= 1"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 3, stride=0), ValueError, "stride must be"),
    (lambda: adapter.SharpenedCosine2d(1, 1, (3, 0)), ValueError, "kernel_size must be"),
    (lambda: adapter.SharpenedCosine2d(1, 1, 3, dilation=(1, 2, 3)), ValueError,
     "dilation must be one value or 2"),
    (lambda: adapter.SharpenedCosine1d(0, 1, 3), ValueError, "in_channels must be"),
    (lambda: adapter.SharpenedCosine1d(1, 1, (3, 3)), ValueError, "kernel_size must be one value"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 1, center=True), ValueError,
     "center=True needs windows of two taps or more"),
    (lambda: adapter.SharpenedCosine2d(1, 1, (1, 1), center=True), ValueError,
     "center=True needs windows of two taps or more"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 3, p_init=float("nan")), ValueError,
     "p_init must be a finite real number"),
    (lambda: adapter.SharpenedCosine2d(1, 1, 3, p_init="a"), TypeError,
     "p_init must be a number or a one-element tensor"),
    (lambda: adapter.SharpenedCosine1d(1, 1, 3, q_init=float("inf")), ValueError,
     "q_init must be a finite real number"),
])
def test_layers_check_their_settings_when_made(make, error, message):
    """Not at the first forward: a bad setting is named when the layer is made."""
    with pytest.raises(error, match=message):
        make()


def test_initial_sharpness_and_noise_floor_may_be_one_element_tensors():
    layer = adapter.SharpenedCosine1d(2, 3, 3, p_init=torch.tensor(1.5), q_init=torch.tensor([0.1]))
    assert torch.equal(layer.p.data, torch.full((3,), 1.5)) and layer.q.item() == pytest.approx(0.1)


def test_centered_layers_of_one_tap_a_channel_over_several_channels():
    """A window spans every input channel: a 1 x 1 kernel over three channels
    has three taps, and a centered layer of them is the Pearson correlation
    of each pixel's channels with the kernel's (it was refused)."""
    rng = np.random.default_rng(3)
    for layer in (adapter.SharpenedCosine1d(3, 2, 1, center=True, q_init=0.0,
                                            dtype=torch.float64),
                  adapter.SharpenedCosine2d(3, 2, np.int64(1), center=True, q_init=0.0,
                                            dtype=torch.float64)):
        x = torch.tensor(rng.standard_normal((3,) + (5,) * (layer.weight.dim() - 2)))
        got = layer(x).detach().numpy().reshape(2, -1)
        pixels = x.numpy().reshape(3, -1)
        kernels = layer.weight.detach().numpy().reshape(2, 3)
        want = [[np.corrcoef(kernel, pixel)[0, 1] for pixel in pixels.T] for kernel in kernels]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("axis", [(-1,), [-1]])
def test_the_function_takes_a_one_tuple_or_list_axis_forward_and_backward(axis):
    """The backward called the gradients' internals with the options as given:
    ``axis=(-1,)`` took the path of several axes (and refused 'causal'),
    ``axis=[-1]`` the one-axis path as if an integer."""
    rng = np.random.default_rng(4)
    signal = torch.tensor(rng.standard_normal((2, 12)), requires_grad=True)
    kernel = torch.tensor(rng.standard_normal(3), requires_grad=True)
    adapter.sliding_cosine(signal, kernel, 1.5, mode="causal", axis=axis).sum().backward()
    plain = [t.detach().clone().requires_grad_() for t in (signal, kernel)]
    adapter.sliding_cosine(*plain, 1.5, mode="causal", axis=-1).sum().backward()
    for ours, want in zip((signal, kernel), plain):
        np.testing.assert_array_equal(ours.grad.numpy(), want.grad.numpy())
    image = torch.tensor(rng.standard_normal((6, 7)), requires_grad=True)
    adapter.sliding_cosine(image, torch.ones(2, 3, dtype=torch.float64), 1.5,
                           axis=[-2, -1]).sum().backward()
    assert image.grad.shape == (6, 7)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_same_agrees_with_conv1d_for_even_spans_only():
    """The docs: 'same' centres as scipy.signal.correlate; for an odd span
    ``(m - 1) d`` the extra zero is on the left, where Conv1d puts it on the
    right (outputs one sample apart); even spans agree."""
    impulse = torch.zeros(1, 1, 9, dtype=torch.float64)
    impulse[..., 4] = 1.0
    for m, dilation, apart in [(3, 1, 0), (4, 1, 1), (2, 2, 0), (2, 1, 1)]:
        kernel = torch.arange(1.0, m + 1, dtype=torch.float64)[None, None]
        ours = adapter.sliding_cosine(impulse, kernel[0, 0], mode="same", dilation=dilation)
        conv = torch.nn.functional.conv1d(impulse, kernel, padding="same", dilation=dilation)
        first = [int(np.flatnonzero(t.detach().numpy().ravel())[0]) for t in (ours, conv)]
        assert first[0] - first[1] == apart


def test_the_1d_layer_takes_one_tuples_as_conv1d_does():
    layer = adapter.SharpenedCosine1d(2, 3, (3,), stride=(2,), dilation=(2,), dtype=torch.float64)
    plain = adapter.SharpenedCosine1d(2, 3, 3, stride=2, dilation=2, dtype=torch.float64)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 2, 30, dtype=torch.float64)
    assert layer.weight.shape == (3, 2, 3) and torch.equal(layer(x), plain(x))


def _gradients_of(make, activation, dtype=torch.float64):
    """The gradients of the inputs and parameters of ``make()``'s output
    after ``activation``, summed (a fixed seed: the same inputs each time)."""
    torch.manual_seed(3)
    layer, x = make(dtype)
    x.requires_grad_(True)
    activation(layer(x)).sum().backward()
    return [x.grad] + [param.grad for param in layer.parameters()]


@pytest.mark.parametrize("make", [
    lambda dtype: (adapter.SharpenedCosine1d(2, 3, 5, p_init=1.3, dtype=dtype),
                   torch.randn(2, 2, 40, dtype=dtype)),
    lambda dtype: (adapter.SharpenedCosine2d(2, 3, 3, mode="same", p_init=0.8, dtype=dtype),
                   torch.randn(2, 2, 9, 10, dtype=dtype)),
    lambda dtype: (adapter.SharpenedCosine2d(2, 3, 3, dtype=dtype),
                   torch.randn(2, 9, 10, dtype=dtype)),
], ids=["1d", "2d", "2d unbatched"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_an_in_place_activation_after_a_layer_gets_the_gradients_of_one_out_of_place(make, dtype):
    """As after ``torch.nn.Conv1d``: the layer's output may be changed in
    place (``nn.ReLU(inplace=True)``), and the backward then computes the
    sharpened scores again rather than reading the changed ones (or
    raising, as a saved output would make it), with the same bits."""
    want = _gradients_of(make, torch.relu, dtype)
    got = _gradients_of(make, torch.nn.ReLU(inplace=True), dtype)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    doubled = _gradients_of(make, lambda out: out.mul_(2.0), dtype)
    for g, w in zip(doubled, _gradients_of(make, lambda out: out * 2.0, dtype)):
        assert torch.equal(g, w)


def test_the_function_s_result_changed_in_place_gets_the_gradients_of_one_out_of_place():
    rng = np.random.default_rng(8)
    x, k = tensor(rng.standard_normal(60)), tensor(rng.standard_normal(7))
    adapter.sliding_cosine(x, k, mode="same").relu().sum().backward()
    want = x.grad.clone(), k.grad.clone()
    x.grad = k.grad = None
    adapter.sliding_cosine(x, k, mode="same").relu_().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), want[0].numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(k.grad.numpy(), want[1].numpy(), rtol=1e-12, atol=1e-15)


def test_a_layer_s_output_and_graph_are_freed_with_it_without_the_collector():
    """The backward keeps an alias of the output for reading it again: an
    alias without its graph, so no reference cycle holds the output (and
    the graph's saved tensors) until the garbage collector runs."""
    import gc
    import weakref

    layer = adapter.SharpenedCosine1d(2, 3, 5, dtype=torch.float64)
    gc.disable()
    try:
        out = layer(torch.randn(2, 2, 40, dtype=torch.float64, requires_grad=True))
        scores = adapter.sliding_cosine(torch.randn(30, dtype=torch.float64, requires_grad=True),
                                        torch.randn(4, dtype=torch.float64))
        refs = weakref.ref(out), weakref.ref(scores)
        del out, scores
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_layers_and_the_function_run_under_inference_mode():
    """``torch.inference_mode`` (how Lightning evaluates) gives the forward of
    ``torch.no_grad``: inference tensors have no version counter, which the
    backward's check of an in-place change read (it raised)."""
    torch.manual_seed(4)
    calls = [
        (adapter.SharpenedCosine1d(2, 3, 5, p_init=1.5, q_init=0.2), torch.randn(2, 2, 30)),
        (adapter.SharpenedCosine2d(2, 3, 3, p_init=1.5, q_init=0.2), torch.randn(2, 2, 9, 9)),
        (lambda x: adapter.sliding_cosine(x, torch.randn(3, generator=torch.Generator().manual_seed(1))),
         torch.randn(20)),
    ]
    for model, x in calls:
        with torch.no_grad():
            want = model(x)
        with torch.inference_mode():
            got = model(x)
        assert got.is_inference()
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_sharpness_whose_square_overflows_is_refused_for_gradients():
    """``p**2`` past float64's range has slopes ``0 * inf``: the layer refuses
    it as ``sliding_cosine_grad`` does (its gradients were NaN), at
    construction and where a step of training takes ``p`` there; a forward
    without gradients sharpens as ``sharpen`` does."""
    with pytest.raises(ValueError, match="p_init must have a finite square"):
        adapter.SharpenedCosine1d(1, 1, 3, dtype=torch.float64, p_init=2e154)
    layer = adapter.SharpenedCosine1d(1, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.p[1] = -2e154
    x = torch.randn(1, 1, 20, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"p must have a finite square .*2e\+154"):
        layer(x)
    with torch.no_grad():
        s = adapter.sliding_cosine(x, layer.weight, 1.0, layer.q * layer.q)
        np.testing.assert_array_equal(layer(x)[:, 1].numpy(), sharpen(s[:, 1].numpy(), -2e154))


def test_subnormal_scores_have_their_slope_in_range_on_either_path():
    """``s = ±1e-310``, ``P = 1e-4``: ``|s|**(P-1)`` overflows and ``P
    |s|**(P-1)`` (9.3e305) does not; ``P = 0``: the slope is 0 (both were
    NaN or inf), in the layer's CPU kernels and in the CUDA tensors'
    operations alike."""
    rows = torch.tensor([[[1e-310, -1e-310, 0.5]], [[1e-310, -1e-310, 0.5]]], dtype=torch.float64)
    exponents = torch.tensor([1e-4], dtype=torch.float64)
    g = torch.ones_like(rows)
    slope = math.exp(math.log(1e-4) + (1e-4 - 1.0) * math.log(1e-310))
    for power, want in ((1e-4, slope), (0.0, 0.0)):
        exponents = torch.tensor([power], dtype=torch.float64)
        out = adapter._sharpen_tensor(rows, exponents)
        on_gpu, _ = adapter._sharpen_tensor_grad(rows, out, g, exponents)
        on_cpu, _ = adapter.drivers.sharpen_rows_grad(rows.numpy(), out.numpy(), g.numpy(),
                                                      exponents.numpy(), True)
        for grad in (on_gpu.numpy(), on_cpu):
            np.testing.assert_allclose(grad[:, 0, :2], want, rtol=1e-12, atol=0)
            assert np.isfinite(grad).all()
    layer = adapter.SharpenedCosine1d(1, 1, 2, p_init=0.01, q_init=0.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[1.0, 0.0]]]))
    x = torch.tensor([[[1e-310, 1.0]]], dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy()[0, 0], [slope, -slope * 1e-310], rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy()[0, 0], [0.0, slope], rtol=1e-12, atol=0)


def test_layers_follow_torchs_module_conventions():
    """``dtype`` defaults to torch's default dtype and ``device`` places the
    parameters, as for torch's layers; ``reset_parameters`` initialises a
    layer made on the meta device; the 2-D layer keeps its sizes as checked
    integers; a bool or complex tensor is no sharpness."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert adapter.SharpenedCosine1d(1, 2, 3).weight.dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    for layer_type, size in ((adapter.SharpenedCosine1d, 3), (adapter.SharpenedCosine2d, (2, 3))):
        layer = layer_type(2, 4, size, p_init=0.7, q_init=0.2, device="cpu",
                           dtype=torch.float64)
        assert {parameter.dtype for parameter in layer.parameters()} == {torch.float64}
        with torch.device("meta"):
            empty = layer_type(2, 4, size, p_init=0.7, q_init=0.2)
        assert empty.weight.is_meta
        empty = empty.to_empty(device="cpu")
        empty.reset_parameters()
        assert torch.all(empty.p == 0.7) and float(empty.q.detach()) == pytest.approx(0.2)
        bound = 1 / math.sqrt(empty.weight[0].numel())  # (kaiming_uniform_ with a = sqrt(5))
        assert empty.weight.abs().max() <= bound and empty.weight.std() > bound / 4
    layer = adapter.SharpenedCosine2d(1, 1, 3, stride=[2, np.int64(1)], dilation=np.int32(2))
    assert layer.options["stride"] == (2, 1) and layer.options["dilation"] == (2, 2)
    assert "stride=(2, 1)" in repr(layer)
    x, k = torch.randn(20), torch.randn(3)
    for bad in (torch.tensor(True), torch.tensor(1 + 1j)):
        with pytest.raises(TypeError, match="sharpness must be a real number"):
            adapter.sliding_cosine(x, k, bad)


@pytest.mark.parametrize("layer, shape", [
    (lambda: adapter.SharpenedCosine1d(2, 3, 3), (0, 2, 10)),
    (lambda: adapter.SharpenedCosine2d(3, 4, 3, stride=2), (0, 3, 9, 8)),
])
def test_a_batch_of_none_gives_an_empty_output_as_torch_convolutions_do(layer, shape):
    """An empty batch (a filtered last batch, a detection head with no
    boxes) was refused as "signal must not be empty", naming a parameter
    the layer's user never passes (an exploratory test)."""
    made = layer()
    x = torch.randn(shape, requires_grad=True)
    out = made(x)
    want = made(torch.randn((1,) + shape[1:])).shape[1:]
    assert out.shape == (0,) + want
    out.sum().backward()
    assert x.grad.shape == x.shape and made.weight.grad is not None
    assert not made.weight.grad.any() and not made.p.grad.any()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bfloat16, torch.int32])
def test_a_layer_of_a_dtype_cosim_np_does_not_compute_is_refused_at_construction(dtype):
    """A complex layer was built, then its forward refused "noise_floor", a
    value computed inside it (an exploratory test)."""
    with pytest.raises(TypeError, match=r"^dtype must be torch\.float16, float32 or float64"):
        adapter.SharpenedCosine1d(2, 3, 3, dtype=dtype)
    with pytest.raises(TypeError, match=r"^dtype must be"):
        adapter.SharpenedCosine2d(2, 3, 3, dtype=dtype)


def test_batched_gradients_are_refused_saying_how_to_go_without():
    """jacobian(..., vectorize=True) and is_grads_batched=True reach the
    backward through vmap: torch said "Batching rule not implemented for
    aten::detach" (an exploratory test); the non-vectorised forms work."""
    layer = adapter.SharpenedCosine1d(1, 1, 3, dtype=torch.float64)
    x = torch.randn(1, 1, 6, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be vectorised over a batch of gradients"):
        torch.autograd.functional.jacobian(layer, x, vectorize=True)
    out = layer(x)
    with pytest.raises(RuntimeError, match="is_grads_batched=False"):
        torch.autograd.grad(out, x, torch.eye(4, dtype=torch.float64).reshape(4, 1, 1, 4),
                            is_grads_batched=True)
    jacobian = torch.autograd.functional.jacobian(layer, x)
    rows = [torch.autograd.grad(layer(x)[0, 0, i], x)[0] for i in range(4)]
    torch.testing.assert_close(jacobian[0, 0], torch.stack(rows))
