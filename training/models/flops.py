"""Parameter and multiply-accumulate (MAC) counts, for model cards and edge budgets.

MACs are counted with forward hooks on the layers that dominate the cost of a 1-D CNN:

    ConvNd:  out.numel() * (in_channels / groups) * prod(kernel_size)
    Linear:  out.numel() * in_features

Biases, batch norm, activations, pooling, padding, the SE gating multiply and the residual add
are ignored (each is O(activations), not O(activations x fan-in)); on Net1D they add well under
1% to the total. Works on models built on the 'meta' device, so the 30M-parameter ECGFounder
can be measured without allocating its weights or running real arithmetic.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(module: nn.modules.conv._ConvNd, out: torch.Tensor) -> int:
    k = 1
    for s in module.kernel_size:
        k *= int(s)
    return out.numel() * (module.in_channels // module.groups) * k


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass of `model` on a zero tensor of `input_shape`.

    input_shape: (B, C, L), or (C, L) meaning B = 1. The count scales linearly with B.
    The model is run in eval mode under no_grad on the device/dtype of its first parameter;
    its training flag is restored afterwards.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32

    total = 0

    def hook(module: nn.Module, inputs, output):
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            total += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
