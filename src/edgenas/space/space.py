"""``SearchSpace``: a named template plus the verbs a search needs (sample, fix, size, match)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

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

    def macs_range(self, rng: np.random.Generator, samples: int = 256) -> tuple[int, int]:
        """Smallest and largest MACs over ``samples`` valid points drawn with ``rng``."""
        macs = [count_arch(self.sample_arch(rng)).macs for _ in range(samples)]
        return min(macs), max(macs)
