"""Where a vectorized iDLG step spends its time: one closure (matching loss + its gradient to the
dummies) for K targets, against the one-target closure of the reference path, in one process.

Rows:
- `reference`: the per-sample path (`attacks.matching.matching_loss` on a plain model, one target).
- `grouped K=...`: the engine's closure (attacks/replicated.py: convolutions with groups = K).
- `unfold K=...` and `custom K=...`: two alternatives tried for the convolutions (not used by the
  engine, kept here because they are measured): im2col + einsum in the forward, and a grouped
  convolution whose backward is written with differentiable ops (conv_transpose2d + im2col) so
  the second derivative does not go through aten's `_convolution_double_backward`.

Per row: milliseconds per closure and per target, the speed-up per target over the reference,
and how many `aten::mkldnn_convolution` calls one closure makes (torch.profiler). The last column
shows what the double backward of grouped convolutions does: with `create_graph=True`, when the
input gradient is itself differentiated, aten runs one convolution per group (2K + 8 calls per
closure on lenet); the last lines show it does so whatever `output_mask` asks for.

Usage:
    .venv/bin/python benchmarks/closure.py --model lenet --ks 1 16 64 128
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import attacks.replicated as replicated
from attacks import AttackSettings, Observation
from attacks.batched import Problem
from attacks.idlg import infer_labels
from attacks.matching import matching_loss, rebuild_victim
from attacks.replicated import replicate
from attacks.spiking import dummy_shape
from fedsnn.audit.cases import sample_cases
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec

Closure = Callable[[], object]
GROUPED = replicated._conv


def unfold_conv(module: torch.nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None,
                x: torch.Tensor) -> torch.Tensor:
    """K-grouped convolution as im2col + einsum (weight [K, O, C, kh, kw], x [N, K*C, H, W])."""
    k, out_channels = weight.shape[:2]
    n, _, height, width = x.shape
    columns = F.unfold(x.reshape(n * k, -1, height, width), module.kernel_size, module.dilation,
                       module.padding, module.stride)
    columns = columns.reshape(n, k, columns.shape[1], columns.shape[2])
    out = torch.einsum("nkcl,koc->nkol", columns, weight.reshape(k, out_channels, -1))
    if bias is not None:
        out = out + bias[None, :, :, None]
    side = [(size + 2 * p - d * (kernel - 1) - 1) // s + 1 for size, p, d, kernel, s in
            zip((height, width), module.padding, module.dilation, module.kernel_size, module.stride,
                strict=True)]
    return out.reshape(n, k * out_channels, *side)


class _ExplicitBackwardConv(torch.autograd.Function):
    """conv2d(groups) whose backward is built from differentiable ops."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        kernel = weight.shape[2:]
        out_pad = [x.shape[2 + i] - ((grad_out.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                      + dilation[i] * (kernel[i] - 1) + 1) for i in range(2)]
        grad_x = F.conv_transpose2d(grad_out, weight, None, stride, padding, out_pad, groups, dilation)
        n, channels, height, width = x.shape
        columns = F.unfold(x.reshape(n * groups, channels // groups, height, width), kernel,
                           dilation, padding, stride).reshape(n, groups, -1, grad_out.shape[2] * grad_out.shape[3])
        grad_w = torch.einsum("nkol,nkcl->koc", grad_out.reshape(n, groups, -1, columns.shape[-1]),
                              columns).reshape(weight.shape)
        grad_b = grad_out.sum((0, 2, 3)) if has_bias else None
        return grad_x, grad_w, grad_b, None, None, None, None


def custom_conv(module: torch.nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None,
                x: torch.Tensor) -> torch.Tensor:
    k = weight.shape[0]
    return _ExplicitBackwardConv.apply(x, weight.reshape(-1, *weight.shape[2:]),
                                       None if bias is None else bias.reshape(-1), module.stride,
                                       module.padding, module.dilation, module.groups * k)


def reference_closure(observation: Observation, settings: AttackSettings) -> Closure:
    victim = rebuild_victim(observation)
    label = infer_labels(observation)
    dummy = torch.full((1, 1, 28, 28), 0.5, requires_grad=True)

    def closure() -> object:
        loss = matching_loss(victim, dummy, lambda logits: F.cross_entropy(logits, label), settings)
        return torch.autograd.grad(loss, dummy)
    return closure


def engine_closure(observations: list[Observation], settings: AttackSettings) -> Closure:
    """The engine's closure on K targets at a gray start (attacks.batched.Problem)."""
    victim = replicate(observations)
    shape = dummy_shape(observations[0].model_spec, victim.batch_size, settings)
    labels = torch.stack([infer_labels(o) for o in observations])
    problem = Problem(victim, settings, shape, labels)
    rows, z = torch.arange(len(observations)), torch.full((len(observations), math.prod(shape)), 0.5)
    return lambda: problem.value_and_grad(rows, z)


def double_backward_convs(groups: int) -> dict[str, int]:
    """Convolutions aten's `_convolution_double_backward` runs for a grouped convolution (lenet's
    second layer, `groups` targets), by which outputs its `output_mask` asks for."""
    x, weight = torch.randn(1, groups * 12, 14, 14), torch.randn(groups * 12, 12, 5, 5)
    grad_out = torch.randn(1, groups * 12, 7, 7)
    counts = {}
    for mask in ([True, True, False], [True, False, False], [False, True, False]):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            torch.ops.aten._convolution_double_backward(
                torch.randn_like(x), torch.randn_like(weight), None, grad_out, weight, x, [2, 2],
                [2, 2], [1, 1], False, [0, 0], groups, mask)
        counts[str(mask)] = sum(e.count for e in prof.key_averages()
                                if e.key == "aten::mkldnn_convolution")
    return counts


def timed(closure: Closure, repeats: int) -> tuple[float, int]:
    """(seconds per call, mkldnn convolutions per call)."""
    closure()
    started = time.perf_counter()
    for _ in range(repeats):
        closure()
    seconds = (time.perf_counter() - started) / repeats
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        closure()
    convs = sum(e.count for e in prof.key_averages() if e.key == "aten::mkldnn_convolution")
    return seconds, convs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 16, 64, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.data)
    n = max(args.ks)
    observations = [case.observation for case in sample_cases(
        ModelSpec(args.model, time_steps=4), data.test_x[:n], data.test_y[:n], name=args.model)]
    settings = AttackSettings(attack="idlg")
    reference, convs = timed(reference_closure(observations[0], settings), args.repeats * 4)
    print(f"{'closure':10} {'K':>4} {'ms/closure':>10} {'ms/target':>9} {'speed-up':>8} {'convs':>6}")
    print(f"{'reference':10} {1:4d} {reference * 1e3:10.2f} {reference * 1e3:9.2f} {1.0:8.1f} {convs:6d}")
    variants = {"grouped": GROUPED, "unfold": unfold_conv, "custom": custom_conv}
    try:
        for k in args.ks:
            for name, conv in variants.items():
                replicated._conv = conv
                seconds, convs = timed(engine_closure(observations[:k], settings), args.repeats)
                print(f"{name:10} {k:4d} {seconds * 1e3:10.2f} {seconds / k * 1e3:9.2f} "
                      f"{reference / (seconds / k):8.1f} {convs:6d}", flush=True)
    finally:
        replicated._conv = GROUPED
    for k in args.ks:
        print(f"_convolution_double_backward, {k} groups: convolutions by output_mask "
              f"{double_backward_convs(k)}")


if __name__ == "__main__":
    main()
