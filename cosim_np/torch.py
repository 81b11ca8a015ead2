"""PyTorch adapter: the sliding cosine as a differentiable function and as a
sharpened-cosine-similarity layer.

Imported only when used (``import cosim_np.torch``); PyTorch is never a
dependency of cosim_np. The forward is :func:`cosim_np.sliding_cosine`, the
backward :func:`cosim_np.sliding_cosine_grad`; CPU tensors go through NumPy
without copies; CUDA tensors go to the GPU backend in place (through
``__cuda_array_interface__``, on torch's current stream), and the results
and gradients come back as CUDA tensors. Tensors on other devices raise
``NotImplementedError``.

Examples
--------
>>> import torch
>>> from cosim_np.torch import SharpenedCosine1d
>>> layer = SharpenedCosine1d(2, 4, 5, mode="same", dtype=torch.float64)
>>> x = torch.randn(3, 2, 50, dtype=torch.float64)
>>> out = layer(x)
>>> out.shape
torch.Size([3, 4, 50])
>>> out.sum().backward()
>>> layer.weight.grad.shape, layer.p.grad.shape
(torch.Size([4, 2, 5]), torch.Size([4]))
"""

import math

import numpy as np
import torch

from ._core import validate as v
from ._cpu import drivers
from .sliding import _gradients
from .sliding import sliding_cosine as _sliding_cosine
from .sliding import sliding_cosine_grad as _sliding_cosine_grad

__all__ = ["sliding_cosine", "SharpenedCosine1d", "SharpenedCosine2d"]


def _host(tensor, name):
    """A CPU tensor's data as a NumPy array, without a copy."""
    if tensor.device.type != "cpu":
        raise NotImplementedError(
            f"cosim_np.torch takes CPU and CUDA tensors: {name} is on {tensor.device}. "
            "Move it with .cpu() or .cuda().")
    try:
        return tensor.detach().numpy()
    except RuntimeError as exc:
        # Batched gradients (jacobian(..., vectorize=True), is_grads_batched=True)
        # reach a backward through vmap, whose tensors have no NumPy memory
        # (and look like plain ones until detached)
        if "Batching rule" not in str(exc):
            raise
        raise RuntimeError(
            "cosim_np.torch runs on NumPy arrays and cannot be vectorised over a batch of "
            "gradients (vmap): pass vectorize=False to torch.autograd.functional.jacobian or "
            "hessian, or is_grads_batched=False to torch.autograd.grad.") from exc


def _operand(tensor, name):
    """What cosim_np's functions take for ``tensor``: a NumPy view of a CPU
    tensor, a CUDA tensor itself (detached: autograd's tensors refuse
    ``__cuda_array_interface__``)."""
    if tensor.dtype == torch.bfloat16:  # (NumPy has no such dtype)
        raise TypeError(f"{name} is a bfloat16 tensor, which cosim_np does not take: convert it "
                        "with .float() (or .half(), .double()).")
    return tensor.detach() if tensor.is_cuda else _host(tensor, name)


def _tensor(result, like):
    """A function's result as a tensor of ``like``'s dtype (and device)."""
    if isinstance(result, torch.Tensor):
        return result.to(like.dtype)
    return torch.from_numpy(np.asarray(result)).to(like.dtype)


def _value(number, name):
    """``sharpness`` or ``noise_floor`` as a float: a real number or a
    one-element tensor."""
    if isinstance(number, torch.Tensor):
        if number.numel() != 1:
            raise TypeError(f"{name} must be a number or a one-element tensor; got a tensor of "
                            f"shape {tuple(number.shape)}.")
        if number.dtype == torch.bool or number.is_complex():
            raise TypeError(f"{name} must be a real number or a one-element real tensor; got a "
                            f"{number.dtype} tensor.")
        return float(number.detach())
    if isinstance(number, (bool, str, bytes)) or number is None:
        raise TypeError(f"{name} must be a number or a one-element tensor; got {number!r}.")
    try:
        return float(number)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a one-element tensor; got "
                        f"{number!r}.") from None


# The options of cosim_np.sliding_cosine that the adapter passes on: results
# are tensors (no out=), and the tensors' device chooses the backend.
_OPTIONS = ("mode", "dilation", "fill", "axis", "method", "center", "stride")


class _SlidingCosine(torch.autograd.Function):
    """``sliding_cosine`` with its gradients (``sliding_cosine_grad``) with
    respect to the signal, the kernel, ``sharpness`` and ``noise_floor``."""

    @staticmethod
    def forward(ctx, signal, kernel, sharpness, noise_floor, options):
        if signal.device != kernel.device:
            raise ValueError(f"signal is on {signal.device} and kernel on {kernel.device}: "
                             "put both on one device.")
        x, k = _operand(signal, "signal"), _operand(kernel, "kernel")
        values = dict(options, sharpness=_value(sharpness, "sharpness"),
                      noise_floor=_value(noise_floor, "noise_floor"))
        result = _sliding_cosine(x, k, **values)  # (of cosim_np's dtype: float64 for integers)
        out = result if isinstance(result, torch.Tensor) else torch.from_numpy(np.asarray(result))
        ctx.save_for_backward(signal, kernel)
        ctx.cosines = _keep(out)
        ctx.values = values
        ctx.scalar_types = (sharpness, noise_floor)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        signal, kernel = ctx.saved_tensors
        out = _kept(ctx.cosines)  # (None: computed again)
        sharpness, noise_floor = ctx.scalar_types
        options = dict(dict(mode="valid", dilation=1, fill=0.0, axis=-1, method="auto",
                            center=False, stride=1), **ctx.values)
        if signal.is_cuda:  # (and so is the kernel; the GPU computes its cosines itself)
            grads = _sliding_cosine_grad(_operand(signal, "signal"), _operand(kernel, "kernel"),
                                         _operand(grad_output, "grad_output"), **options)
        else:
            grads = _gradients(_host(signal, "signal"), _host(kernel, "kernel"),
                               _host(grad_output, "grad_output"),
                               want_sharpness=ctx.needs_input_grad[2],
                               forward=None if out is None else _host(out, "out"), **options)

        def scalar(value, like):
            if not isinstance(like, torch.Tensor):
                return None
            return torch.tensor(value, dtype=like.dtype, device=like.device).reshape(like.shape)

        wanted = ctx.needs_input_grad
        return _not_twice((_tensor(grads.signal, signal) if wanted[0] else None,
                           _tensor(grads.kernel, kernel) if wanted[1] else None,
                           scalar(grads.sharpness, sharpness),
                           scalar(grads.noise_floor, noise_floor), None),
                          (signal, kernel, sharpness, noise_floor, grad_output))


def _eager(function):
    """``function`` run as it is under ``torch.compile`` (a graph break):
    TorchDynamo would trace the NumPy calls inside as tensor operations (the
    CPU tensors' NumPy views then looked like device arrays)."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return function if disable is None else disable(function)


@_eager
def sliding_cosine(signal, kernel, sharpness=1.0, noise_floor=0.0, **options):
    """:func:`cosim_np.sliding_cosine` on tensors, differentiable with respect
    to ``signal``, ``kernel`` and (when they are tensors) ``sharpness`` and
    ``noise_floor``.

    Parameters
    ----------
    signal, kernel : torch.Tensor
        As for :func:`cosim_np.sliding_cosine`, on the CPU or on a CUDA
        device (both on the same one).
    sharpness, noise_floor : float or torch.Tensor, optional
        As for :func:`cosim_np.sliding_cosine`; a tensor of one element
        gets its gradient.
    **options
        Those of :func:`cosim_np.sliding_cosine`: ``mode``, ``dilation``,
        ``fill``, ``axis``, ``method``, ``center``, ``stride`` (not ``out``
        nor ``backend``: the result is a new tensor on the tensors' device).

    Returns
    -------
    torch.Tensor
        The cosines, of :func:`cosim_np.sliding_cosine`'s shape and dtype:
        the signal's for floating-point tensors, float64 for integer and
        bool ones.

    Raises
    ------
    TypeError
        ``signal`` or ``kernel`` not a tensor, an unknown option (or
        ``out``, ``backend``), a dtype NumPy has not (bfloat16).
    ValueError
        ``signal`` and ``kernel`` on different devices, and every error of
        :func:`cosim_np.sliding_cosine`.
    NotImplementedError
        Tensors on a device other than the CPU or a CUDA GPU.
    RuntimeError
        A second backward through the gradients (``create_graph=True``),
        or the gradients of a batch of calls at once
        (``torch.func.vmap``, ``jacobian(..., vectorize=True)``).

    Notes
    -----
    ``torch.autograd.gradcheck`` passes in float64. With ``sharpness`` 1 and
    ``stride`` 1 the backward takes the cosines from the forward's result,
    as rounded to its dtype, instead of computing them again: for float32
    or float16 tensors the gradients then carry that rounding (a unit of
    the dtype against the size of their terms), which near a perfect match
    (``|s|`` near 1, where the gradient is small) is large beside the
    gradient. Use float64 tensors for gradients as exact as
    :func:`cosim_np.sliding_cosine_grad`'s.

    Examples
    --------
    >>> import torch
    >>> from cosim_np.torch import sliding_cosine
    >>> signal = torch.tensor([0.0, 1, 2, 3, 0, -1, -2, -3, 0], dtype=torch.float64,
    ...                       requires_grad=True)
    >>> kernel = torch.tensor([1.0, 2, 3], dtype=torch.float64, requires_grad=True)
    >>> p = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    >>> s = sliding_cosine(signal, kernel, sharpness=p)
    >>> s[[1, 5]]
    tensor([ 1., -1.], dtype=torch.float64, grad_fn=<IndexBackward0>)
    >>> s.sum().backward()
    >>> kernel.grad.shape, p.grad.shape
    (torch.Size([3]), torch.Size([]))
    """
    for name, value in (("signal", signal), ("kernel", kernel)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (cosim_np.sliding_cosine takes "
                            f"NumPy arrays); got {type(value).__name__}.")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"cosim_np.torch.sliding_cosine takes the options {', '.join(_OPTIONS)}; "
                        f"got {', '.join(unknown)} (out and backend do not apply to tensors: "
                        "the result is a new tensor on the tensors' device).")
    return _SlidingCosine.apply(signal, kernel, sharpness, noise_floor, options)


class _Sharpen(torch.autograd.Function):
    """``sign(s) |s| ** (p**2)``, a sharpness per channel: ``p`` of shape
    ``(K, 1)`` against ``s`` ``(..., K, L)``, or of one element for any
    ``s``.  One pass each way in float64 (``_cpu.drivers.sharpen_rows``;
    float32 scores by the vectorised powers of ``_cpu.powers``), with the
    conventions of ``sliding_cosine_grad`` at ``s = 0`` (``d/ds`` 0
    for ``p**2 < 1``, 1 for ``p**2 = 1``; ``d/dp`` 0), where torch's
    ``pow`` would give NaN or inf."""

    @staticmethod
    def _rows(s, p):
        """``s`` as rows ``(B, K, L)`` and the exponents ``(K,)``."""
        exponents = p.detach().to(torch.float64) ** 2  # (squared in float64, as sharpen does)
        if p.numel() == 1:
            return s.reshape(1, 1, -1), exponents.reshape(1)
        if p.dim() != 2 or p.shape[1] != 1 or s.dim() < 2 or s.shape[-2] != p.shape[0]:
            raise ValueError(f"p must have shape (K, 1) for scores (..., K, L) or one element; "
                             f"got p of shape {tuple(p.shape)} for scores of shape {tuple(s.shape)}.")
        return s.reshape(-1, p.shape[0], s.shape[-1]), exponents.reshape(-1)

    @staticmethod
    def forward(ctx, s, p):
        rows, exponents = _Sharpen._rows(s, p)
        out = _Sharpen._sharpened(rows, exponents, s.shape)
        ctx.save_for_backward(s, p)
        ctx.sharpened = _keep(out)
        return out

    @staticmethod
    def _sharpened(rows, exponents, shape, rounded=True):
        """The rows sharpened, a new tensor of that ``shape`` and not a view
        (the output of a function that is a view cannot be changed in place,
        as by an in-place activation after a layer); ``rounded=False``: of
        the computing dtype (float16 rows: float32), on the host."""
        if rows.is_cuda:
            out = _sharpen_tensor(rows.detach(), exponents.to(rows.device)).reshape(shape)
            return out if out._base is None else out.clone()
        values = _computing(_host(rows, "s"), copy=True)  # (sharpened in place)
        drivers.sharpen_rows(values, _host(exponents, "p"))
        out = torch.from_numpy(values.reshape(shape))
        return out.to(rows.dtype) if rounded else out

    @staticmethod
    def backward(ctx, grad_output):
        s, p = ctx.saved_tensors
        rows, exponents = _Sharpen._rows(s, p)
        out = _kept(ctx.sharpened)
        if out is None or (out.dtype == torch.float16 and not s.is_cuda):
            # (float16 sharpened scores hold too few digits for out / s where
            # they are subnormal: they are taken again, as computed, in float32)
            out = _Sharpen._sharpened(rows, exponents, rows.shape, rounded=out is None)
        if s.is_cuda:
            grad, log_sums = _sharpen_tensor_grad(rows.detach(), out.reshape(rows.shape),
                                                  grad_output.reshape(rows.shape),
                                                  exponents.to(s.device))
        else:
            grad, log_sums = (torch.from_numpy(part) for part in drivers.sharpen_rows_grad(
                _computing(_host(rows, "s")), _computing(_host(out.reshape(rows.shape), "out")),
                _computing(_host(grad_output.reshape(rows.shape), "grad_output")),
                _host(exponents, "p"), ctx.needs_input_grad[1]))
        grad_s = grad.to(s.dtype).reshape(s.shape)
        grad_p = 2 * p.detach() * log_sums.to(p.dtype).reshape(p.shape)
        return _not_twice((grad_s, grad_p), (s, p, grad_output))


def _sharpen(s, p):
    """``_Sharpen`` of a layer's scores ``s`` with its ``p``, refused where
    gradients are to come and ``p**2`` overflows (as ``sliding_cosine_grad``
    refuses it: the slopes of ``|s|**inf`` are ``0 * inf``)."""
    if torch.is_grad_enabled() and (s.requires_grad or p.requires_grad) and not bool(
            torch.isfinite(p.detach().to(torch.float64) ** 2).all()):
        raise ValueError("p must have a finite square for gradients (|p| < 1.3e154); got "
                         f"{float(p.detach().abs().max())!r}.")
    return _Sharpen.apply(s, p)


def _keep(result):
    """What a backward needs to read ``result`` (a function's output) again:
    an alias of it without its graph (kept on ``ctx``, it makes no reference
    cycle through the graph, as ``save_for_backward`` would not either) and
    its version; None for an inference tensor (made under
    ``torch.inference_mode``, where no backward runs: it has no version)."""
    if result.is_inference():
        return None
    alias = result.detach()  # (it shares the result's version counter)
    return alias, alias._version


def _kept(kept):
    """The result :func:`_keep` kept, or None where it has been changed in
    place since (an in-place activation after a layer, as after
    ``torch.nn.Conv1d``): the backward then computes it again, where
    ``save_for_backward`` would have made the backward raise."""
    if kept is None:
        return None
    alias, version = kept
    return alias if alias._version == version else None


def _computing(array, copy=False):
    """Scores as the sharpening computes them: C-contiguous float32 or
    float64, float16 ones as float32 (and rounded back after, as
    :func:`cosim_np.sharpen` does)."""
    dtype = np.float32 if array.dtype == np.float16 else array.dtype
    return np.array(array, dtype=dtype, order="C", copy=True if copy else None)


class _NotTwice(torch.autograd.Function):
    """The identity on the gradients of this module's functions, whose own
    backward raises: they are not differentiable again, and a second
    backward through them (a gradient penalty) would otherwise miss their
    part without a word."""

    @staticmethod
    def forward(ctx, anchors, *values):
        # (the inputs that require grad come first: the gradients' graph
        # reaches each of them through this node)
        return tuple(grad.clone() for grad in values[anchors:])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "cosim_np.torch's gradients are not differentiable again: a second backward "
            "(create_graph=True, as for a gradient penalty) through sliding_cosine or a "
            "SharpenedCosine layer is not supported.")


def _not_twice(grads, inputs):
    """A backward's ``grads`` (tensors or None) as they are, or, where it
    builds a graph (``create_graph=True``) from ``inputs`` that require
    grad, through :class:`_NotTwice`."""
    anchors = [value for value in inputs
               if isinstance(value, torch.Tensor) and value.requires_grad]
    present = [i for i, grad in enumerate(grads) if grad is not None]
    if not torch.is_grad_enabled() or not anchors or not present:
        return grads
    passed = _NotTwice.apply(len(anchors), *anchors, *(grads[i] for i in present))
    result = list(grads)
    for i, grad in zip(present, passed if isinstance(passed, tuple) else (passed,)):
        result[i] = grad
    return tuple(result)


def _sharpen_tensor(rows, exponents):
    """``drivers.sharpen_rows`` in torch's operations (for CUDA tensors):
    ``sign(s) |s| ** P_k`` of rows ``(B, K, L)`` in float64, then rounded to
    their dtype."""
    s = rows.to(torch.float64)
    # (NaN stays NaN: torch.sign(NaN) is 0, and NaN ** 0 is 1)
    sharpened = torch.where(torch.isnan(s), s, torch.sign(s) * s.abs() ** exponents[:, None])
    return sharpened.to(rows.dtype)


def _sharpen_tensor_grad(rows, out, g, exponents):
    """``drivers.sharpen_rows_grad`` in torch's operations, with its
    conventions at ``s = 0`` (``d/ds`` 0 for ``P < 1``, 1 for ``P = 1``;
    no ``ln|s|`` term), in float64: ``(grad_s, log_sums)``."""
    s, out, g = (part.to(torch.float64) for part in (rows, out, g))
    power = exponents[:, None]
    magnitude = s.abs()
    zero = magnitude == 0.0  # (NaN is not: it stays NaN below)
    safe = torch.where(zero, 1.0, magnitude)
    term = safe ** (power - 1.0)
    # (a subnormal s, P < 1: the slope may be in range, 0 at P = 0)
    slope = torch.where(term.isinf(), power * safe**power / safe, power * term)
    slope = torch.where(zero, torch.where(power == 1.0, 1.0, 0.0), slope)
    logs = torch.where(zero, 0.0, g * out * torch.log(torch.where(zero, 1.0, magnitude)))
    return g * slope, logs.sum(dim=(0, 2))


class SharpenedCosine1d(torch.nn.Module):
    """A sharpened-cosine-similarity layer over 1-D signals (seed 000's
    learnable ``p``, as a layer).

    ``out[b, o] = sign(s) |s| ** (p[o]**2)`` with ``s`` the cosine of each
    window of ``x[b]`` (``in_channels`` by ``kernel_size`` taps, spaced
    ``dilation`` apart) with ``weight[o]``, its norm plus the noise floor
    ``q**2`` in the denominator (:func:`cosim_np.sliding_cosine` with a
    multi-channel kernel).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the inputs, and kernels (channels of the outputs).
    kernel_size : int or (int,)
        Taps of each kernel, along the signal.
    stride : int or (int,), optional
        Keep every ``stride``-th window (a convolution layer's stride).
    dilation : int or (int,), optional
        Spacing of the taps (1: adjacent samples).
    mode : {'valid', 'same', 'full', 'causal'}, optional
        The sliding modes of :func:`cosim_np.sliding_cosine` (default
        'valid').
    padding : {'valid', 'same', 'full', 'causal'}, optional
        PyTorch's name for ``mode`` (give one of the two).
    center : bool, optional
        Pearson's correlation instead of the cosine (``center=True``). A
        constant kernel (all taps equal: zeroed by pruning, say) then has
        no direction, and the forward raises ``ValueError`` naming it, as
        :func:`cosim_np.sliding_cosine` does; without ``center`` a zero
        kernel's outputs are 0 and get no gradient.
    p_init, q_init : float, optional
        Initial sharpness (every output channel; ``|p| < 1.3e154``, whose
        square is finite, wherever gradients are taken) and ``q`` (the noise
        floor is ``q**2``, never negative).
    dtype, device : optional
        Of the parameters, as for torch's layers (default: torch's default
        dtype, and device).

    Notes
    -----
    Learned parameters: ``weight`` ``(out_channels, in_channels,
    kernel_size)`` (also read as ``kernel``), ``p`` ``(out_channels,)``
    and ``q`` (a scalar). Inputs ``(batch, in_channels, n)``, or
    ``(in_channels, n)`` unbatched, as ``torch.nn.Conv1d``'s. The
    windows' norms are exact (no ``eps``), and no gradient of finite inputs
    is NaN or infinite (the conventions of
    :func:`cosim_np.sliding_cosine_grad`).

    Examples
    --------
    >>> import torch
    >>> from cosim_np.torch import SharpenedCosine1d
    >>> layer = SharpenedCosine1d(2, 4, 5, stride=2, dtype=torch.float64)
    >>> layer
    SharpenedCosine1d(2, 4, kernel_size=5, stride=2, dilation=1, mode='valid', center=False)
    >>> out = layer(torch.randn(3, 2, 50, dtype=torch.float64))
    >>> out.shape
    torch.Size([3, 4, 23])
    >>> bool(out.abs().max() <= 1)
    True
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, dilation=1,
                 mode=None, center=False, p_init=1.0, q_init=1e-3, dtype=None, device=None,
                 padding=None):
        super().__init__()
        _layer_sizes(1, in_channels=in_channels, out_channels=out_channels)
        # (one-tuples too, as torch.nn.Conv1d takes them)
        kernel_size, stride, dilation = _layer_sizes(1, kernel_size=kernel_size, stride=stride,
                                                     dilation=dilation)
        _check_center(center, in_channels * kernel_size)
        _make_parameters(self, (out_channels, in_channels, kernel_size), p_init, q_init, dtype,
                         device)
        self.options = dict(mode=_layer_mode(mode, padding), dilation=dilation, center=center,
                            stride=stride)

    @property
    def kernel(self):
        """The kernels, ``weight`` (cosim_np's name for them)."""
        return self.weight

    def reset_parameters(self):
        """Draw ``weight`` again (as ``torch.nn.Conv1d`` draws its own)
        and set ``p`` and ``q`` to ``p_init`` and ``q_init``: torch's way to
        initialise a layer made without values (``torch.device("meta")``,
        ``torch.nn.utils.skip_init``)."""
        _reset(self)

    @_eager
    def forward(self, x):
        """``x``: ``(batch, in_channels, n)`` or ``(in_channels, n)``; returns
        ``(batch, out_channels, L)`` or ``(out_channels, L)``, ``L`` as the
        mode and the stride give."""
        _check_input(x, self.weight.shape[1], 1)
        if x.dim() == 3 and x.shape[0] == 0:
            return _empty_batch(self, x)
        s = sliding_cosine(x, self.weight, 1.0, self.q * self.q, **self.options)
        return _sharpen(s, self.p[:, None])

    def extra_repr(self):
        out_channels, in_channels, kernel_size = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={kernel_size}, "
                f"stride={self.options['stride']}, dilation={self.options['dilation']}, "
                f"mode={self.options['mode']!r}, "
                f"center={self.options['center']}")


class SharpenedCosine2d(torch.nn.Module):
    """A sharpened-cosine-similarity layer over images: :class:`SharpenedCosine1d`
    with windows of ``kernel_size`` pixels over the last two axes (every
    input channel in each window, :func:`cosim_np.sliding_cosine` with
    ``axis=(-2, -1)`` and a multi-channel kernel).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the inputs, and kernels (channels of the outputs).
    kernel_size : int or (int, int)
        Pixels of each kernel, ``(kh, kw)`` (one number: square).
    stride, dilation : int or (int, int), optional
        Keep every ``stride``-th window along each axis; spacing of the
        taps along each axis (1: adjacent pixels).
    mode : {'valid', 'same', 'full'}, optional
        The sliding modes of :func:`cosim_np.sliding_cosine`, for both axes
        (default 'valid').
    padding : {'valid', 'same', 'full'}, optional
        PyTorch's name for ``mode`` (give one of the two).
    center : bool, optional
        Pearson's correlation instead of the cosine (``center=True``). A
        constant kernel (all taps equal: zeroed by pruning, say) then has
        no direction, and the forward raises ``ValueError`` naming it, as
        :func:`cosim_np.sliding_cosine` does; without ``center`` a zero
        kernel's outputs are 0 and get no gradient.
    p_init, q_init : float, optional
        Initial sharpness (every output channel; ``|p| < 1.3e154`` wherever
        gradients are taken) and ``q`` (the noise floor is ``q**2``).
    dtype, device : optional
        Of the parameters, as for torch's layers (default: torch's default
        dtype, and device).

    Notes
    -----
    Learned parameters: ``weight`` ``(out_channels, in_channels, kh, kw)``
    (also read as ``kernel``), ``p`` ``(out_channels,)`` and ``q``.  CPU
    and CUDA tensors, as :class:`SharpenedCosine1d`; inputs ``(batch,
    in_channels, H, W)``, or ``(in_channels, H, W)`` unbatched, as
    ``torch.nn.Conv2d``'s.

    Examples
    --------
    >>> import torch
    >>> from cosim_np.torch import SharpenedCosine2d
    >>> layer = SharpenedCosine2d(3, 8, 3, mode="same", dtype=torch.float64)
    >>> out = layer(torch.randn(2, 3, 16, 20, dtype=torch.float64))
    >>> out.shape
    torch.Size([2, 8, 16, 20])
    >>> out.sum().backward()
    >>> layer.weight.grad.shape
    torch.Size([8, 3, 3, 3])
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, dilation=1,
                 mode=None, center=False, p_init=1.0, q_init=1e-3, dtype=None, device=None,
                 padding=None):
        super().__init__()
        _layer_sizes(1, in_channels=in_channels, out_channels=out_channels)
        size, stride, dilation = _layer_sizes(2, kernel_size=kernel_size, stride=stride,
                                              dilation=dilation)
        _check_center(center, in_channels * size[0] * size[1])
        _make_parameters(self, (out_channels, in_channels) + size, p_init, q_init, dtype, device)
        self.options = dict(mode=_layer_mode(mode, padding, ("valid", "same", "full")),
                            dilation=dilation, center=center, stride=stride, axis=(-2, -1))

    kernel = SharpenedCosine1d.kernel
    reset_parameters = SharpenedCosine1d.reset_parameters

    @_eager
    def forward(self, x):
        """``x``: ``(batch, in_channels, H, W)`` or ``(in_channels, H, W)``;
        returns ``(batch, out_channels, H', W')`` or ``(out_channels, H',
        W')``."""
        _check_input(x, self.weight.shape[1], 2)
        if x.dim() == 4 and x.shape[0] == 0:
            return _empty_batch(self, x)
        s = sliding_cosine(x, self.weight, 1.0, self.q * self.q, **self.options)
        rows = s.reshape(s.shape[-3], -1) if s.dim() == 3 else s.reshape(s.shape[0], s.shape[1], -1)
        return _sharpen(rows, self.p[:, None]).reshape(s.shape)

    def extra_repr(self):
        out_channels, in_channels = self.weight.shape[:2]
        return (f"{in_channels}, {out_channels}, kernel_size={tuple(self.weight.shape[2:])}, "
                f"stride={self.options['stride']}, dilation={self.options['dilation']}, "
                f"mode={self.options['mode']!r}, center={self.options['center']}")


def _layer_mode(mode, padding, modes=("valid", "same", "full", "causal")):
    """A layer's sliding mode: ``mode``, or PyTorch's name for it,
    ``padding`` ('valid' where neither is given), one of ``modes``."""
    if padding is not None and not isinstance(padding, str):
        raise TypeError(f"padding takes the sliding modes {', '.join(map(repr, modes))} (as "
                        f"mode= does), not PyTorch's numbers of zeros; got {padding!r}.")
    if mode is not None and padding is not None and mode != padding:
        raise ValueError(f"mode={mode!r} and padding={padding!r} name the layer's mode twice, "
                         "differently; give one.")
    chosen = mode if mode is not None else padding if padding is not None else "valid"
    v.check_choice(chosen, "mode", modes)
    return chosen


def _layer_sizes(axes, **sizes):
    """A layer's ``kernel_size``, ``stride`` and ``dilation``: integers of
    at least 1, one for every axis or one per axis (``axes`` of them);
    returns them in order, as integers for one axis, else as tuples of one
    integer per axis."""
    checked = []
    for name, value in sizes.items():
        values = value if isinstance(value, (tuple, list)) else (value,) * axes
        if len(values) != axes:
            raise ValueError(f"{name} must be one value or {axes}; got {value!r}.")
        values = tuple(v.check_positive_int(item, name) for item in values)
        checked.append(values[0] if axes == 1 else values)
    return checked


def _make_parameters(layer, shape, p_init, q_init, dtype, device):
    """A layer's ``weight`` of ``shape`` ``(out_channels, in_channels,
    taps...)``, ``p`` (one per output channel) and ``q``, of ``dtype``
    (None: torch's default) on ``device``, from finite ``p_init`` and
    ``q_init``, and set as :func:`_reset` sets them."""
    p = v.check_real(_value(p_init, "p_init"), "p_init")
    if not math.isfinite(p * p):
        raise ValueError(f"p_init must have a finite square (|p_init| < 1.3e154, for "
                         f"gradients); got {p_init!r}.")
    q = v.check_real(_value(q_init, "q_init"), "q_init")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
                              or dtype == torch.bfloat16):
        raise TypeError(f"dtype must be torch.float16, float32 or float64 (or None: torch's "
                        f"default), the dtypes cosim_np computes; got {dtype!r}.")
    made = dict(dtype=dtype, device=device)
    layer.weight = torch.nn.Parameter(torch.empty(shape, **made))
    layer.p = torch.nn.Parameter(torch.empty(shape[0], **made))
    layer.q = torch.nn.Parameter(torch.empty((), **made))
    layer.p_init, layer.q_init = p, q
    _reset(layer)


def _reset(layer):
    """A layer's parameters as at construction: ``weight`` drawn as
    ``torch.nn.Conv1d`` draws its own, ``p`` and ``q`` their initial
    values."""
    with torch.no_grad():
        torch.nn.init.kaiming_uniform_(layer.weight, a=5**0.5)
        layer.p.fill_(layer.p_init)
        layer.q.fill_(layer.q_init)


def _check_center(center, taps):
    """``center=True`` needs windows of two taps or more (every input
    channel's taps): one sample less its mean is 0, and every window's
    correlation undefined."""
    if v.check_bool(center, "center") and taps < 2:
        raise ValueError("center=True needs windows of two taps or more (a one-tap window "
                         "less its mean is zero: no correlation is defined); got one input "
                         "channel and a kernel_size of one tap.")


def _empty_batch(layer, x):
    """A layer's output for a batch of none, as torch's convolutions give
    it: the shape of one sample's output with a batch of 0, in the graph of
    ``x`` and the parameters (their gradients zero)."""
    one = layer(x.new_zeros((1,) + tuple(x.shape[1:])))
    return one[:0] + 0 * x.sum()


def _check_input(x, in_channels, axes):
    """A layer's input: ``(batch, in_channels, ...)`` or ``(in_channels,
    ...)`` with ``axes`` sliding axes."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}.")
    if x.dim() not in (axes + 1, axes + 2) or x.shape[-axes - 1] != in_channels:
        dims = ("n",) if axes == 1 else ("H", "W")
        raise ValueError(f"x must have shape (batch, {in_channels}, {', '.join(dims)}) or "
                         f"({in_channels}, {', '.join(dims)}) for in_channels={in_channels}; "
                         f"got {tuple(x.shape)}.")
