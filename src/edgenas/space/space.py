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

BLOCK = re.compile(r"stages\[(\d+)\]\.blocks\[(\d+)\]")  # a block position's path


def failing_block(err: Exception) -> str | None:
    """The block position a validation error names (``stages[2].blocks[1]``), if it names one."""
    m = BLOCK.match(str(err))
    return m.group(0) if m else None


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

    def block_paths(self) -> list[str]:
        """The searchable block positions, in network order."""
        return [p for p in self._paths if BLOCK.fullmatch(p)]

    def block_options(self, block: str) -> list[dict[str, Any]]:
        """Every distinct assignment of one block position's own choices (its op and the choices nested under
        that op), e.g. 17 for an edgetpu-v2-224 position with skip."""
        own = [(p, c) for p, c in self._paths.items() if p == block or p.startswith(block + "@")]
        seen, out = set(), []
        for combo in itertools.product(*(range(len(c.options)) for _, c in own)):
            picked = {p: c.value(i) for (p, c), i in zip(own, combo)}
            key = tuple((p, str(picked[p])) for p in active_paths(picked, list(picked)))
            if key not in seen:
                seen.add(key)
                out.append(picked)
        return out

    def covering(self) -> Iterator[dict[str, Any]]:
        """Valid decisions that together contain every distinct layer of the space: for each stage, every
        pair of (its input channels, its output channels) with every block option at all its positions; and
        every stem and head choice with the last stage's channels. Assumes, as the named spaces do, that a
        block's layers depend only on its own choices and those channel counts (strides are fixed). Latency
        tables are filled from these."""
        base = {p: c.value(0) for p, c in self._paths.items()}
        width = {int(m.group(1)): p for p in self._paths if (m := re.fullmatch(r"stages\[(\d+)\]\.out_channels", p))}
        options = lambda path: self._paths[path].options if path in self._paths else (None,)  # noqa: E731
        trials = []
        for s in sorted(set(width) | {int(BLOCK.match(p).group(1)) for p in self.block_paths()}):
            before, after = width.get(s - 1, "stem.out_channels"), width.get(s, "")
            combos = [self.block_options(b) for b in self.block_paths() if BLOCK.match(b).group(1) == str(s)]
            for cin, cout in itertools.product(options(before), options(after)):
                for j in range(max((len(c) for c in combos), default=1)):
                    d = {**base, **{k: v for k, v in ((before, cin), (after, cout)) if k in self._paths}}
                    for c in combos:
                        d.update(c[j % len(c)])
                    trials.append(d)
        ends = [p for p in self._paths if p.startswith(("stem.", "head."))] + ([width[max(width)]] if width else [])
        trials += [{**base, **dict(zip(ends, values))}
                   for values in itertools.product(*(self._paths[p].options for p in ends))]
        for d in trials:
            for _ in self.block_paths():  # a block option that does not fit here falls back to the block's first
                try:
                    self.fix(d)
                    yield d
                    break
                except SpecError as err:
                    block = failing_block(err)
                    first = self.block_options(block)[0] if block else None
                    if first is None or d == {**d, **first}:
                        break
                    d = {**d, **first}

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
