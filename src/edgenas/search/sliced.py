"""A weight-sharing supernet over any space, by slicing: the segmentation and detection spaces' supernet.

Every parameter of every point of the space is a slice of one shared tensor: the first channels along each
channel dimension and the centre k x k of a kernel, as in the classification ``Supernet``. A grouped conv's
weight is the block-diagonal part of a full kernel (output channel o of G groups sees its group's input
channels only), so points with different group counts share one full kernel, again as there. A parameter is
shared by name, so the builder's module tree is the sharing plan: the same backbone position, graph node or
head layer shares; an op's weights are also keyed by the op's type (an IBN and a fused IBN at one position
never share, as in TuNAS), and a node's input edges by the input's name (so a head node that reads another
set of inputs shares the edges the sets have in common). ``forward(x, decision)`` builds the decision's
network (``nn.build_model``) and runs it with the sliced shared tensors in place of its own parameters, so
``extract(decision)`` (the same network with the slices copied in) computes exactly the same.

The shared tensors are sized by building a covering set of points (the widest decision, every option of every
choice in turn on top of it, and ``samples`` random points); a point that needs more raises an error that
says so rather than training a wrong slice. They start from the built networks' own initialisation
(including the heads' prior biases), each slice written by the points that use it.

BatchNorm is TuNAS's: batch statistics in every forward during search (the built network runs in training
mode); an extracted network gets its statistics recalibrated (``supernet.recalibrate_bn``).
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..nn import build_model
from ..space import SearchSpace
from ..space.choice import iter_sites
from ..spec import Arch, Detector, Network, SpecError

MAX_COMBINATIONS = 64  # of the choices outside block positions, enumerated in full when there are at most this
KERNEL_DIMS = 2  # a 4-d weight's last two dimensions are the kernel: centre-cropped, not prefix-sliced


def region(big: tuple[int, ...], small: tuple[int, ...]) -> tuple[slice, ...]:
    """Where a parameter of shape ``small`` sits in a shared tensor of shape ``big``."""
    if len(big) != len(small) or any(s > b for s, b in zip(small, big)):
        raise ValueError(f"shape {tuple(small)} does not fit in {tuple(big)}")
    out = []
    for d, (b, s) in enumerate(zip(big, small)):
        lo = (b - s) // 2 if len(big) == 4 and d >= 4 - KERNEL_DIMS else 0
        out.append(slice(lo, lo + s))
    return tuple(out)


def grouped(module: nn.Module) -> int:
    """The group count of a grouped (not depthwise, not dense) conv, else 1."""
    if isinstance(module, nn.Conv2d) and module.groups > 1 and module.in_channels != module.groups:
        return module.groups
    return 1


def block_diagonal(dense: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped conv's weight ``[cout, cin / groups, k, k]`` from a full kernel ``[cout, cin, k, k]``."""
    cout, cin = dense.shape[:2]
    cin_g, cout_g = cin // groups, cout // groups
    index = (torch.arange(cout) // cout_g * cin_g)[:, None] + torch.arange(cin_g)
    return torch.gather(dense, 1, index[:, :, None, None].expand(cout, cin_g, *dense.shape[2:]))


def _parameters(model: nn.Module) -> Iterator[tuple[str, torch.Tensor, int]]:
    """(name, parameter, groups) of every parameter; groups > 1 for a grouped conv's weight."""
    for name, p in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        yield name, p, grouped(owner) if name.endswith("weight") else 1


def _dense_shape(p: torch.Tensor, groups: int) -> tuple[int, ...]:
    return tuple(p.shape) if groups == 1 else (p.shape[0], p.shape[1] * groups, *p.shape[2:])


def sharing_names(spec) -> dict[str, str]:
    """Module-path prefixes renamed for sharing: ``{built prefix: shared prefix}``. Ops get their type, input
    edges their source's name."""
    out = {}
    backbone = spec if isinstance(spec, Arch) else getattr(spec, "backbone", None)
    if backbone is not None:
        for s, stage in enumerate(backbone.stages):
            for i, block in enumerate(stage.blocks):
                out[f"backbone.stages.{s}.{i}."] = f"backbone.stages.{s}.{i}@{block.type}."
    if isinstance(spec, (Network, Detector)):
        edges = "edges" if isinstance(spec, Detector) else "resample"
        for node in spec.nodes:
            for j, op in enumerate(node.ops):
                out[f"nodes.{node.name}.ops.{j}."] = f"nodes.{node.name}.ops.{j}@{op.type}."
            for j, source in enumerate(node.inputs):
                out[f"nodes.{node.name}.{edges}.{j}."] = f"nodes.{node.name}.{edges}@{source}."
    return out


def shared_name(name: str, renames: Mapping[str, str]) -> str:
    for prefix, to in renames.items():
        if name.startswith(prefix):
            return to + name[len(prefix):]
    return name


def sizing_decisions(space: SearchSpace, samples: int, seed: int) -> Iterator[dict]:
    """Points that together need the largest slice of every shared tensor. Every shape grows with the widths,
    kernels and expansions (a grouped conv's full kernel does not depend on its groups), so it is enough to
    build, on top of the widest point: every op type at every position at once, at its largest kernel and
    expansion; the same again where a position's input is widest through skipped positions before it; and
    the other choices (a head's cells, fusion and levels, a node's inputs) in all their combinations where
    there are at most ``MAX_COMBINATIONS``, else each option in turn. Then ``samples`` random points."""
    choices = dict(space.choices())
    widths = set(space.width_choices())
    widest = {p: (max(c.options) if p in widths else c.value(0)) for p, c in choices.items()}
    positions = space.block_paths()
    options = {b: space.block_options(b) for b in positions}
    others = [p for p in choices if p not in widths and space.owner(p) is None and p not in options]

    def largest(block: str, kind: str) -> list[dict]:
        """The block's options of op type ``kind``, largest kernel and expansion first."""
        def size(o: dict) -> tuple:
            return tuple(-v for k, v in sorted(o.items()) if isinstance(v, (int, float)) and k != block)
        return sorted((o for o in options[block] if o[block] == kind), key=size)

    def build(d: dict, wanted: dict[str, str]) -> dict | None:
        """``d`` with each wanted (block: op type) at its largest option that makes a valid point."""
        for b, kind in wanted.items():
            d.update(largest(b, kind)[0])

        def next_option(block: str | None, point: dict) -> dict | None:
            if block not in wanted:
                return None if block is None else {**point, **options[block][0]}
            ranked = largest(block, wanted[block])
            at = next((i for i, o in enumerate(ranked) if all(point.get(k) == v for k, v in o.items())), -1)
            return {**point, **ranked[at + 1]} if at + 1 < len(ranked) else None

        try:
            return space.fix_repairing(d, next_option, sum(len(o) for o in options.values()) + 1)[1]
        except SpecError:
            return None

    kinds = sorted({o[b] for b in positions for o in options[b]} - {"skip", "none"})
    for kind in kinds:
        found = build(dict(widest), {b: kind for b in positions if any(o[b] == kind for o in options[b])})
        if found is not None:
            yield found
    for k, chain in _skip_chains(space, positions, widest, options):
        for kind in kinds:
            if any(o[positions[k]] == kind for o in options[positions[k]]):
                found = build({**widest, **chain}, {positions[k]: kind})
                if found is not None:
                    yield found
    combos = list(itertools.product(*(range(len(choices[p].options)) for p in others)))
    if len(combos) > MAX_COMBINATIONS:
        combos = [tuple(j % len(choices[p].options) for p in others)
                  for j in range(max(len(choices[p].options) for p in others))]
    for combo in combos:
        found = build({**widest, **{p: choices[p].value(i) for p, i in zip(others, combo)}}, {})
        if found is not None:
            yield found
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        yield space.sample(rng)


def _skip_chains(space: SearchSpace, positions: list[str], widest: dict, options: dict) -> Iterator[tuple]:
    """(k, decision part) for every block position k whose widest input comes through skipped positions: the
    widest earlier position it can be reached from runs its first op, every position between is skipped."""
    sites = {site.path: site for site in iter_sites(space.template)}
    by_loc = {site.loc: p for p, site in sites.items() if site.parent is None}

    def width(block: str) -> int:
        loc = sites[block].loc
        if "blocks" not in loc:
            return 0
        width_loc = loc[:loc.index("blocks")] + ("out_channels",)
        return widest[by_loc[width_loc]] if width_loc in by_loc else 0

    skippable = [any(o[b] == "skip" for o in options[b]) for b in positions]
    for k in range(1, len(positions)):
        q, best = k - 1, k - 1
        while q > 0 and skippable[q]:
            q -= 1
            if width(positions[q]) > width(positions[best]):
                best = q
        if best < k - 1:
            chain = dict(options[positions[best]][0])
            for b in positions[best + 1:k]:
                chain[b] = "skip"
            yield k, chain


class SlicedSupernet(nn.Module):
    """All points of ``space`` in one set of shared tensors (see the module docstring)."""

    def __init__(self, space: SearchSpace, *, samples: int = 16, seed: int = 0, cached: int = 4):
        super().__init__()
        self.space, self.cached = space, cached
        tensors: dict[str, torch.Tensor] = {}
        for decision in sizing_decisions(space, samples, seed):
            spec = space.fix(decision)
            renames = sharing_names(spec)
            for name, p, groups in _parameters(build_model(spec)):
                key, need = shared_name(name, renames), _dense_shape(p, groups)
                old = tensors.get(key)
                if old is None or any(s > b for s, b in zip(need, old.shape)):
                    shape = need if old is None else tuple(max(a, b) for a, b in zip(need, old.shape))
                    grown = torch.zeros(shape)
                    if old is not None:
                        grown[region(shape, tuple(old.shape))] = old
                    tensors[key] = old = grown
                part = old[region(tuple(old.shape), need)]
                if groups == 1:
                    part.copy_(p.detach())
                else:  # the block-diagonal entries of the full kernel
                    cin_g, cout_g = p.shape[1], p.shape[0] // groups
                    for g in range(groups):
                        part[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = p.detach()[g * cout_g:(g + 1) * cout_g]
        self.names = sorted(tensors)
        self.index = {k: i for i, k in enumerate(self.names)}
        self.shared = nn.ParameterList(nn.Parameter(tensors[k]) for k in self.names)
        self._modules_by_spec: OrderedDict[str, tuple[nn.Module, dict]] = OrderedDict()

    def spec(self, decision: Mapping[str, Any] | Any):
        return self.space.fix(decision) if isinstance(decision, Mapping) else decision

    def _plan(self, spec) -> tuple[nn.Module, dict[str, tuple[int, tuple[slice, ...], int]]]:
        """The built network of ``spec`` (kept for the last few specs) and, per parameter, its shared tensor,
        the region of it that the parameter is, and its groups (block-diagonal part of that region)."""
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key in self._modules_by_spec:
            self._modules_by_spec.move_to_end(key)
            return self._modules_by_spec[key]
        module, renames, where = build_model(spec), sharing_names(spec), {}
        for name, p, groups in _parameters(module):
            shared = shared_name(name, renames)
            if shared not in self.index:
                raise SpecError(f"supernet: {name} ({shared}) has no shared tensor; the sizing pass never built it")
            i = self.index[shared]
            try:
                where[name] = (i, region(tuple(self.shared[i].shape), _dense_shape(p, groups)), groups)
            except ValueError as err:
                raise SpecError(f"supernet: {shared}: {err}; the sizing pass missed this point's size") from None
        self._modules_by_spec[key] = (module, where)
        while len(self._modules_by_spec) > self.cached:
            self._modules_by_spec.popitem(last=False)
        return module, where

    def forward(self, x: torch.Tensor, decision: Mapping[str, Any] | Any):
        """The decision's network on ``x`` with the shared weights, in training mode (batch statistics)."""
        module, where = self._plan(self.spec(decision))
        module.train(self.training)
        return functional_call(module, self._weights(where), (x,), strict=False)

    def _weights(self, where: dict) -> dict[str, torch.Tensor]:
        return {name: self.shared[i][r] if g == 1 else block_diagonal(self.shared[i][r], g)
                for name, (i, r, g) in where.items()}

    @torch.no_grad()
    def extract(self, decision: Mapping[str, Any] | Any) -> nn.Module:
        """The decision's network, standalone, with the shared slices copied in (BatchNorm statistics fresh:
        recalibrate before evaluating)."""
        spec = self.spec(decision)
        _, where = self._plan(spec)
        model, weights = build_model(spec), self._weights(where)
        for name, p in model.named_parameters():
            p.copy_(weights[name])
        return model
