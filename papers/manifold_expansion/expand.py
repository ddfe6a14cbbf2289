"""Expansion operators: wider and deeper, with Net2Net (function-preserving), random or zero new units.

Net2WiderNet (Chen et al. 2016): new unit j copies the incoming weights of a random existing unit g(j);
each copy's outgoing weights are the original's divided by how many copies it now has. Symmetry breaking
without losing the function: a replica gets +noise on its outgoing weights and its original gets -noise,
so their sum (all the next layer sees, since the two activations are equal) is unchanged.
random: new incoming and outgoing weights drawn as PyTorch's default init (not function-preserving).
zero: new incoming weights random, outgoing weights zero (function-preserving, GradMax-style).
Net2DeeperNet: a new layer initialised to the identity after a ReLU (exact: ReLU(x) = x for x >= 0);
in a ResNet, a new residual block whose last BN scale is zero. random: the new layer at default init.
Every operator returns a new model and leaves its input untouched.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from papers.manifold_expansion.config import Expansion
from papers.manifold_expansion.models import BasicBlock, ResNet, n_params


class ExpansionError(ValueError):
    """An expansion that does not fit the model (a layer that does not exist, an unknown init)."""


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """PyTorch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from `gen`."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _mapping(old: int, units: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, old, (units,), generator=gen)


def _grow_rows(w: torch.Tensor, units: int, init: str, g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Append `units` output rows to a weight (or a bias, or BN vector)."""
    if init == "net2net":
        return torch.cat([w, w[g]])
    fan_in = w[0].numel() if w.dim() > 1 else 1
    return torch.cat([w, _uniform((units, *w.shape[1:]), fan_in, gen)])


def _grow_cols(
    w: torch.Tensor, old: int, units: int, init: str, g: torch.Tensor, gen: torch.Generator, noise: float
) -> torch.Tensor:
    """Append `units` input columns to the next layer's weight, seen as (out, old, rest)."""
    shape = w.shape
    v = w.reshape(shape[0], old, -1)
    if init == "net2net":
        counts = torch.bincount(torch.cat([torch.arange(old), g]), minlength=old).to(v.dtype)
        base = v / counts[None, :, None]
        new = base[:, g].clone()
        if noise > 0:
            eps = torch.randn(new.shape, generator=gen, dtype=v.dtype) * noise * float(v.std())
            new += eps
            base = base.index_add(1, g, -eps)
        out = torch.cat([base, new], dim=1)
    elif init == "random":
        out = torch.cat([v, _uniform((shape[0], units, v.shape[2]), old * v.shape[2], gen)], dim=1)
    else:
        out = torch.cat([v, torch.zeros(shape[0], units, v.shape[2], dtype=v.dtype)], dim=1)
    return out.reshape(shape[0], -1, *shape[2:])


def weight_positions(model: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))]


def _check_init(init: str) -> None:
    if init not in ("net2net", "random", "zero"):
        raise ExpansionError(f"unknown init {init!r}; valid: net2net, random, zero")


def _new_like(layer: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> nn.Module:
    if isinstance(layer, nn.Linear):
        new: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    else:
        assert isinstance(layer, nn.Conv2d)
        new = nn.Conv2d(
            w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding, bias=b is not None
        )
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _widen_sequential(
    model: nn.Sequential, layer: int, units: int, init: str, gen: torch.Generator, noise: float
) -> nn.Sequential:
    pos = weight_positions(model)
    if not 0 <= layer < len(pos) - 1:
        raise ExpansionError(f"wider: layer {layer} is not a hidden layer; valid: 0..{len(pos) - 2}")
    a, b = model[pos[layer]], model[pos[layer + 1]]
    old = a.weight.shape[0]
    g = _mapping(old, units, gen)
    with torch.no_grad():
        wa = _grow_rows(a.weight, units, init, g, gen)
        ba = None
        if a.bias is not None:  # a fresh bias has the fan-in of the layer's weight rows
            fresh = a.bias[g] if init == "net2net" else _uniform((units,), a.weight[0].numel(), gen)
            ba = torch.cat([a.bias, fresh])
        wb = _grow_cols(b.weight, old, units, init, g, gen, noise)
    out = copy.deepcopy(model)
    out[pos[layer]] = _new_like(a, wa, ba)
    out[pos[layer + 1]] = _new_like(b, wb, b.bias.detach().clone() if b.bias is not None else None)
    return out


def _deepen_sequential(model: nn.Sequential, layer: int, init: str, gen: torch.Generator) -> nn.Sequential:
    pos = weight_positions(model)
    if not 0 <= layer < len(pos) - 1:
        raise ExpansionError(f"deeper: layer {layer} is not a hidden layer; valid: 0..{len(pos) - 2}")
    prev = model[pos[layer]]
    width = prev.weight.shape[0]
    insert_at = pos[layer + 1]
    while isinstance(model[insert_at - 1], (nn.Flatten, nn.AdaptiveAvgPool2d)):
        insert_at -= 1
    if isinstance(prev, nn.Linear):
        w = torch.eye(width) if init == "net2net" else _uniform((width, width), width, gen)
    else:
        if init == "net2net":
            w = torch.zeros(width, width, 3, 3)
            w[torch.arange(width), torch.arange(width), 1, 1] = 1.0
        else:
            w = _uniform((width, width, 3, 3), width * 9, gen)
    fan_in = w[0].numel()
    bias = torch.zeros(width) if init == "net2net" else _uniform((width,), fan_in, gen)
    template = nn.Linear(width, width) if isinstance(prev, nn.Linear) else nn.Conv2d(width, width, 3, padding=1)
    modules = list(copy.deepcopy(model))
    modules[insert_at:insert_at] = [_new_like(template, w, bias), nn.ReLU()]
    return nn.Sequential(*modules)


def _widen_resnet(model: ResNet, layer: int, units: int, init: str, gen: torch.Generator, noise: float) -> ResNet:
    """Widen the inner width of block `layer` (conv1 outputs, bn1, conv2 inputs)."""
    if not 0 <= layer < len(model.blocks):
        raise ExpansionError(f"wider: block {layer} does not exist; valid: 0..{len(model.blocks) - 1}")
    out = copy.deepcopy(model)
    blk = out.blocks[layer]
    old = blk.conv1.weight.shape[0]
    g = _mapping(old, units, gen)
    with torch.no_grad():
        w1 = _grow_rows(blk.conv1.weight, units, init, g, gen)
        w2 = _grow_cols(blk.conv2.weight, old, units, init, g, gen, noise)
        bn = nn.BatchNorm2d(old + units)
        for name in ("weight", "bias", "running_mean", "running_var"):
            cur = getattr(blk.bn1, name)
            fresh = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}[name]
            grown = torch.cat([cur, cur[g]]) if init == "net2net" else torch.cat([cur, torch.full((units,), fresh)])
            getattr(bn, name).copy_(grown)
        bn.num_batches_tracked.copy_(blk.bn1.num_batches_tracked)
    blk.conv1 = _new_like(blk.conv1, w1, None)
    blk.bn1 = bn
    blk.conv2 = _new_like(blk.conv2, w2, None)
    return out


def _deepen_resnet(model: ResNet, layer: int, init: str, gen: torch.Generator) -> ResNet:
    """A new stride-1 block after block `layer`; net2net: its last BN scale is zero, so it adds nothing."""
    if not 0 <= layer < len(model.blocks):
        raise ExpansionError(f"deeper: block {layer} does not exist; valid: 0..{len(model.blocks) - 1}")
    out = copy.deepcopy(model)
    c = out.blocks[layer].conv2.weight.shape[0]
    blk = BasicBlock(c, c, c)
    with torch.no_grad():
        blk.conv1.weight.copy_(_uniform(tuple(blk.conv1.weight.shape), c * 9, gen))
        blk.conv2.weight.copy_(_uniform(tuple(blk.conv2.weight.shape), c * 9, gen))
        if init == "net2net":
            blk.bn2.weight.zero_()
    blocks = list(out.blocks)
    blocks.insert(layer + 1, blk)
    out.blocks = nn.ModuleList(blocks)
    return out


def widen(model: nn.Module, layer: int, units: int, init: str, gen: torch.Generator, noise: float = 0.0) -> nn.Module:
    _check_init(init)
    if units < 1:
        raise ExpansionError(f"wider: units must be at least 1, got {units}")
    if isinstance(model, ResNet):
        return _widen_resnet(model, layer, units, init, gen, noise)
    if isinstance(model, nn.Sequential):
        return _widen_sequential(model, layer, units, init, gen, noise)
    raise ExpansionError(f"cannot expand a {type(model).__name__}; valid: nn.Sequential MLP/CNN, ResNet")


def deepen(model: nn.Module, layer: int, init: str, gen: torch.Generator) -> nn.Module:
    _check_init(init)
    if init == "zero":
        raise ExpansionError("deeper: init zero would cut the network; valid: net2net, random")
    if isinstance(model, ResNet):
        return _deepen_resnet(model, layer, init, gen)
    if isinstance(model, nn.Sequential):
        return _deepen_sequential(model, layer, init, gen)
    raise ExpansionError(f"cannot expand a {type(model).__name__}; valid: nn.Sequential MLP/CNN, ResNet")


def matched_units(model: nn.Module, layer: int, match: int) -> int:
    """New units in `layer` whose parameter count is closest to one deeper block after `match`."""
    probe = torch.Generator().manual_seed(0)
    target = n_params(deepen(model, match, "random", probe)) - n_params(model)
    per_unit = n_params(widen(model, layer, 1, "random", probe)) - n_params(model)
    return max(1, round(target / per_unit))


def expand(model: nn.Module, exp: Expansion, gen: torch.Generator, noise: float = 0.0) -> nn.Module:
    """Apply one configured expansion; the input model is not changed."""
    if exp.op == "wider":
        units = exp.units if exp.units is not None else matched_units(model, exp.layer, exp.match or 0)
        return widen(model, exp.layer, units, exp.init, gen, noise)
    out = model
    for i in range(exp.blocks):
        out = deepen(out, exp.layer + i, exp.init, gen)
    return out
