"""``SearchSpace``: a named template plus the verbs a search needs (sample, fix, size, match)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from ..spec import Arch, SpecError, count as count_arch, parse_arch
from . import choice as walk
from .choice import Choice

# Training settings that ride along in an Arch but are not architecture: a zoo model is a point of a space
# whatever its dropout or name.
NOT_ARCHITECTURE = frozenset({"name", "drop_path_rate", "head.dropout", "preprocess"})


@dataclass(frozen=True)
class SearchSpace:
    name: str
    template: Arch  # built with model_construct, with Choice objects at the searched fields
    description: str = ""
    _paths: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_paths", dict(walk.iter_choices(self.template)))

    def choices(self) -> list[tuple[str, Choice]]:
        """Every (path, Choice), in the one deterministic walk order; nested choices follow their parent."""
        return list(self._paths.items())

    def size(self) -> int:
        """Number of distinct points (a choice adds its options' counts; fields multiply). Some points may
        be invalid, e.g. a group size that does not divide a block's expanded channels."""
        return walk.count(self.template)

    def fix(self, decision: Mapping[str, Any]) -> Arch:
        """The validated ``Arch`` a decision picks. Decisions for choices inside options that were not
        picked are allowed (a controller decides every choice); paths the space lacks are errors."""
        unknown = [p for p in decision if p not in self._paths]
        if unknown:
            raise SpecError(f"{unknown[0]}: not a choice of space {self.name!r}")
        data = walk.resolve(self.template, decision)
        if not data.get("name"):
            data["name"] = self.name
        return parse_arch(data)

    def sample(self, rng: np.random.Generator, max_tries: int = 1000) -> dict[str, Any]:
        """A uniformly drawn *valid* decision (rejecting invalid points, at most ``max_tries`` draws)."""
        for _ in range(max_tries):
            decision = walk.sample(self.template, rng)
            try:
                self.fix(decision)
            except SpecError:
                continue
            return decision
        raise RuntimeError(f"space {self.name!r}: no valid point in {max_tries} draws")

    def sample_arch(self, rng: np.random.Generator) -> Arch:
        return self.fix(self.sample(rng))

    def match(self, arch: Arch) -> dict[str, Any] | None:
        """The decision that gives ``arch`` (ignoring name, dropout, drop-path, preprocessing), or None."""
        found = walk.match(self.template, arch, ignore=NOT_ARCHITECTURE)
        return None if found is None else {p: found[p] for p in self._paths if p in found}

    def contains(self, arch: Arch) -> bool:
        return self.match(arch) is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "size": self.size(),
                "template": walk.dump(self.template)}

    def block_options(self, block: str) -> list[dict[str, Any]]:
        """Every distinct assignment of one block position's own choices (its op and the choices nested under
        that op), e.g. 17 for an edgetpu-v2-224 position with skip."""
        own = [(p, c) for p, c in self._paths.items() if p == block or p.startswith(block + "@")]
        seen, out = set(), []
        for combo in itertools.product(*(range(len(c.options)) for _, c in own)):
            picked = {p: c.labels[i] if hasattr(c.options[i], "type") else c.options[i]
                      for (p, c), i in zip(own, combo)}
            active = {p: v for p, v in picked.items() if p in active_paths(picked, [p])}
            key = tuple(sorted((p, str(v)) for p, v in active.items()))
            if key not in seen:
                seen.add(key)
                out.append(picked)
        return out

    def covering(self) -> Iterator[dict[str, Any]]:
        """Valid decisions that together contain every distinct layer of the space: for each stage, every
        pair of (its input channels, its output channels) with every block option at all its positions; and
        every stem and head choice. Assumes, as the named spaces do, that a block's layers depend only on its
        own choices and those channel counts (strides are fixed). Latency tables are filled from these."""
        base = {p: (c.labels[0] if hasattr(c.options[0], "type") else c.options[0]) for p, c in self._paths.items()}
        stages = sorted({int(m.group(1)) for p in self._paths if (m := re.match(r"stages\[(\d+)\]", p))})
        width = [p for p in self._paths if re.fullmatch(r"stages\[\d+\]\.out_channels", p)]
        width_of = {int(re.search(r"\d+", p).group()): p for p in width}
        def options(path):
            return self._paths[path].options if path in self._paths else (None,)
        trials = []
        for s in stages:
            before = width_of.get(s - 1, "stem.out_channels")
            blocks = sorted({m.group(0) for p in self._paths if (m := re.match(rf"stages\[{s}\]\.blocks\[\d+\]", p))})
            combos = [self.block_options(b) for b in blocks]
            n = max((len(c) for c in combos), default=1)
            for cin, cout in itertools.product(options(before), options(width_of.get(s, ""))):
                for j in range(n):
                    d = dict(base)
                    for c in combos:
                        d.update(c[j % len(c)])
                    d.update({k: v for k, v in ((before, cin), (width_of.get(s), cout)) if k in self._paths})
                    trials.append(d)
        ends = [p for p in self._paths if p.startswith(("stem.", "head."))]
        last = width_of.get(max(width_of), None) if width_of else None
        for values in itertools.product(*(self._paths[p].options for p in ends + ([last] if last else []))):
            trials.append({**base, **dict(zip(ends + ([last] if last else []), values))})
        for d in trials:
            for _ in range(len(self._paths)):  # a block whose option does not fit here falls back to its first
                try:
                    self.fix(d)
                except SpecError as err:
                    bad = re.match(r"(stages\[\d+\]\.blocks\[\d+\])", str(err))
                    if not bad or d == {**d, **self.block_options(bad.group(1))[0]}:
                        break
                    d = {**d, **self.block_options(bad.group(1))[0]}
                    continue
                yield d
                break

    def macs_range(self, rng: np.random.Generator, samples: int = 256) -> tuple[int, int]:
        """Smallest and largest MACs over ``samples`` valid points drawn with ``rng``."""
        macs = [count_arch(self.sample_arch(rng)).macs for _ in range(samples)]
        return min(macs), max(macs)



def active_paths(decision: Mapping[str, Any], paths: list[str]) -> list[str]:
    """The choices that shape the point: a choice nested in an option (``p@label.field``) counts only when
    its parent choice picked that option."""
    def active(path: str) -> bool:
        if "@" not in path:
            return True
        parent, rest = path.rsplit("@", 1)
        return active(parent) and str(decision.get(parent)) == rest.split(".", 1)[0]
    return [p for p in paths if active(p)]
