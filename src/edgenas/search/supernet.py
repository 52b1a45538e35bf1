"""A weight-sharing supernet over a ``SearchSpace`` (TuNAS / OFA style).

Per block position there is one weight set per block type (ibn, fused_ibn, gc_ibn) at the largest kernel,
expansion and channel counts any decision can ask for; a decision slices it: the first channels, the centre
k x k of the kernel. GC-IBN choices with different group counts share one full k x k kernel: a grouped conv
takes its block-diagonal part (output channel o of G groups sees input channels of o's group only), which is
the full kernel under a block-diagonal mask. ``forward(x, decision)`` computes exactly what
``extract(decision)`` builds as a standalone ``ClassificationModel``.

``separate`` (e.g. ``("expand_ratio",)``) gives each option of those choices its own weight set instead of a
slice of the largest one: less sharing, so a narrow path no longer trains the first channels of every wider
one (measured in ``bench/fidelity.py``).

BatchNorm is TuNAS's: one set of affine parameters per slot, statistics of the current batch always (no
running statistics are kept during search); an extracted model gets its statistics recalibrated on training
images (``recalibrate_bn``) before it is evaluated.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import build_model
from ..nn.layers import ConvNormAct, make_act
from ..space import SearchSpace
from ..space.choice import Choice
from ..spec import GCIBN, IBN, Arch, FusedIBN, Skip, block_plan

SEARCHED_BLOCKS = {"ibn": IBN, "fused_ibn": FusedIBN, "gc_ibn": GCIBN}


def _options(value) -> tuple:
    return value.options if isinstance(value, Choice) else (value,)


class SharedConv(nn.Module):
    """The largest conv + BN of a slot. ``depthwise``: one k x k filter per channel ([C, 1, K, K])."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, depthwise: bool = False,
                 eps: float = 1e-3):
        super().__init__()
        self.depthwise, self.eps = depthwise, eps
        shape = (out_channels, 1 if depthwise else in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bn_weight = nn.Parameter(torch.ones(out_channels))
        self.bn_bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def kernel(self, cin: int, cout: int, k: int, groups: int = 1) -> torch.Tensor:
        """The conv weight (PyTorch layout, ``[cout, cin // groups, k, k]``) a decision uses."""
        big = self.weight.shape[-1]
        if k > big:
            raise ValueError(f"kernel {k} exceeds the shared kernel {big}")
        lo = (big - k) // 2
        w = self.weight[:cout, :, lo:lo + k, lo:lo + k]
        if self.depthwise:
            if groups != cin or cin != cout:
                raise ValueError("a depthwise slot computes depthwise convs only")
            return w
        if groups == 1:
            return w[:, :cin]
        cin_g, cout_g = cin // groups, cout // groups  # block-diagonal part of the full kernel
        index = (torch.arange(cout, device=w.device) // cout_g * cin_g)[:, None] + torch.arange(cin_g, device=w.device)
        return torch.gather(w[:, :cin], 1, index[:, :, None, None].expand(cout, cin_g, k, k))

    def forward(self, x, cout: int, k: int = 1, stride: int = 1, groups: int = 1, dilation: int = 1,
                act: str = "none") -> torch.Tensor:
        w = self.kernel(x.shape[1], cout, k, groups)
        x = F.conv2d(x, w, None, stride, (k - 1) // 2 * dilation, dilation, groups)
        x = F.batch_norm(x, None, None, self.bn_weight[:cout], self.bn_bias[:cout], training=True, eps=self.eps)
        return make_act(act)(x)

    @torch.no_grad()
    def copy_to(self, target: ConvNormAct) -> None:
        conv = target.conv
        target.conv.weight.copy_(self.kernel(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.groups))
        target.bn.weight.copy_(self.bn_weight[:conv.out_channels])
        target.bn.bias.copy_(self.bn_bias[:conv.out_channels])


class SharedBlock(nn.Module):
    """One block type at one position: ``expand`` [, ``spatial``], ``project`` slots, named as the block
    modules of ``edgenas.nn.blocks`` name theirs."""

    def __init__(self, kind: str, cin: int, cout: int, mid: int, kernel: int, eps: float):
        super().__init__()
        self.kind = kind
        if kind == "ibn":
            self.expand = SharedConv(cin, mid, 1, eps=eps)
            self.spatial = SharedConv(mid, mid, kernel, depthwise=True, eps=eps)
        else:
            self.expand = SharedConv(cin, mid, kernel, eps=eps)
        self.project = SharedConv(mid, cout, 1, eps=eps)

    def forward(self, x, spec, cout: int, stride: int, dilation: int, residual: bool = True) -> torch.Tensor:
        cin = x.shape[1]
        mid, k, act = spec.mid(cin), spec.kernel_size, str(spec.act)
        y = x
        if self.kind == "ibn":
            if mid != cin:
                y = self.expand(y, mid, act=act)
            y = self.spatial(y, mid, k, stride, mid, dilation, act)
        elif mid != cin:
            y = self.expand(y, mid, k, stride, spec.expand_groups(cin), dilation, act)
        y = self.project(y, cout)
        return y + x if residual and spec.has_residual(cin, cout) else y

    def copy_to(self, module: nn.Module) -> None:
        for name in ("expand", "spatial", "project"):
            target = getattr(module, name, None)
            if isinstance(target, ConvNormAct):
                getattr(self, name).copy_to(target)


SEPARABLE = ("expand_ratio", "kernel_size")


class Supernet(nn.Module):
    """All architectures of ``space`` in one network with shared weights."""

    def __init__(self, space: SearchSpace, separate: tuple[str, ...] = ()):
        super().__init__()
        unknown = set(separate) - set(SEPARABLE)
        if unknown:
            raise ValueError(f"separate: unknown field(s) {sorted(unknown)}; known: {', '.join(SEPARABLE)}")
        self.space, self.separate = space, tuple(f for f in SEPARABLE if f in separate)
        t = space.template
        eps = t.norm.eps
        stem_c, stem_k = max(_options(t.stem.out_channels)), max(_options(t.stem.kernel_size))
        self.stem = SharedConv(t.in_channels, stem_c, stem_k, eps=eps)
        cin, self.positions = stem_c, []
        stages = []
        for s, stage in enumerate(t.stages):
            cout = max(_options(stage.out_channels))
            blocks = nn.ModuleList()
            for i, position in enumerate(stage.blocks):
                ops = nn.ModuleDict()
                for option in _options(position):
                    kind = option.type
                    if kind == "skip":
                        continue
                    if kind not in SEARCHED_BLOCKS:
                        raise ValueError(f"stages[{s}].blocks[{i}]: the supernet has no shared {kind} block")
                    for values in itertools.product(*(self._split(option, f) for f in SEPARABLE)):
                        expand, kernel = (max(v) for v in values)  # a separated field's group is one value
                        key = self._key(kind, {"expand_ratio": expand, "kernel_size": kernel})
                        ops[key] = SharedBlock(kind, cin, cout, round(cin * expand), kernel, eps)
                blocks.append(ops)
                cin = cout
            stages.append(blocks)
        self.stages = nn.ModuleList(stages)
        head_c = max(_options(t.head.conv_channels))
        self.head_conv = SharedConv(cin, head_c, 1, eps=eps)
        self.classifier = nn.Linear(head_c, t.head.num_classes)
        # Zero logits at the start: Google's dense init (uniform +-1/sqrt(classes)) gives logits of std ~4
        # over 1024 features with 10 classes, and the first steps of every sampled path then diverge.
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def _split(self, option, field: str) -> list[tuple]:
        """The option groups of ``field`` that get one weight set each."""
        values = _options(getattr(option, field))
        return [(v,) for v in values] if field in self.separate else [values]

    def key(self, block) -> str:
        """The weight set a block spec uses at its position."""
        return self._key(block.type, {f: getattr(block, f) for f in self.separate})

    def _key(self, kind: str, values: Mapping[str, int]) -> str:
        return "_".join([kind] + [f"{f[0]}{values[f]}" for f in self.separate])

    def arch(self, decision: Mapping[str, Any]) -> Arch:
        return self.space.fix(decision)

    def forward(self, x: torch.Tensor, decision: Mapping[str, Any] | Arch,
                parallel: Mapping[tuple[int, int], list] | None = None) -> torch.Tensor:
        """The decision's network. ``parallel``: at a (stage, index) position, the sum of these block specs
        (one per op) replaces the decision's block, with the residual added once: TuNAS's op warm-up, where
        all ops of a position are enabled at once."""
        arch = decision if isinstance(decision, Arch) else self.space.fix(decision)
        x = self.stem(x, arch.stem.out_channels, arch.stem.kernel_size, arch.stem.stride, act=str(arch.stem.act))
        for pb in block_plan(arch):
            ops = self.stages[pb.stage][pb.index]
            specs = (parallel or {}).get((pb.stage, pb.index))
            if specs:
                ys = [ops[self.key(b)](x, b, pb.out_channels, pb.stride, pb.dilation, residual=False)
                      for b in specs if not isinstance(b, Skip)]
                if ys:  # skip alone is the identity
                    y = torch.stack(ys).sum(0)
                    x = y + x if any(b.has_residual(x.shape[1], pb.out_channels) for b in specs) else y
                continue
            if isinstance(pb.block, Skip):
                continue
            x = ops[self.key(pb.block)](x, pb.block, pb.out_channels, pb.stride, pb.dilation)
        head = arch.head
        x = self.head_conv(x, head.conv_channels, act=str(head.act))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.linear(x, self.classifier.weight[:, :head.conv_channels], self.classifier.bias)

    def extract(self, decision: Mapping[str, Any] | Arch) -> nn.Module:
        """A standalone model of the decision with the shared weights copied in (BatchNorm statistics are
        fresh: call ``recalibrate_bn`` before evaluating it)."""
        arch = decision if isinstance(decision, Arch) else self.space.fix(decision)
        model = build_model(arch)
        self.stem.copy_to(model.backbone.stem)
        for pb in block_plan(arch):
            if not isinstance(pb.block, Skip):
                self.stages[pb.stage][pb.index][self.key(pb.block)].copy_to(model.backbone.stages[pb.stage][pb.index])
        self.head_conv.copy_to(model.head.conv)
        with torch.no_grad():
            model.head.classifier.weight.copy_(self.classifier.weight[:, :arch.head.conv_channels])
            model.head.classifier.bias.copy_(self.classifier.bias)
        return model


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Replace every BatchNorm's running statistics with their average over ``batches`` (training images);
    returns the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()
