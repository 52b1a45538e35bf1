"""``SearchSpace``: a named template plus the verbs a search needs (sample, fix, size, match).

The template is a spec (an ``Arch``, a ``Network`` or a ``Detector``) built with ``model_construct``, with
``Choice`` objects at the searched fields. Where a choice is not a field of the spec itself (a BiFPN's number
of cells, a node's depth), the template holds a space's own placeholder there and ``finish`` turns the picked
data into spec data; ``decode`` is its inverse (a spec in the template's form), so ``match`` can tell whether a
zoo model is a point. A block position is any choice among specs (block or op types), wherever it stands.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from pydantic import BaseModel

from ..spec import Arch, SpecError, count as count_arch, parse_spec, spec_layers
from . import choice as walk
from .choice import Choice, ChoiceSite

# Where a decision does not make a valid arch, ``repair(block, decision)`` proposes another decision: ``block``
# is the searched block position the error names (None when it names none); None gives up.
Repair = Callable[[str | None, dict], dict | None]


# Training settings that ride along in an Arch but are not architecture: a zoo model is a point of a space
# whatever its dropout or name.
NOT_ARCHITECTURE = frozenset({"name", "drop_path_rate", "head.dropout", "preprocess"})
REJECTION_DRAWS = 20  # uniform draws ``sample`` tries before it repairs one


@dataclass(frozen=True)
class SearchSpace:
    name: str
    template: Any  # an Arch, Network or Detector built with model_construct, Choice objects at the searched fields
    description: str = ""
    finish: Callable[[dict], dict] | None = None  # picked data -> spec data (None: the data is the spec's)
    decode: Callable[[Any], Any] | None = None  # a spec -> the template's form of it, for ``match``
    _sites: dict = field(default=None, init=False, repr=False, compare=False)
    _paths: dict = field(default=None, init=False, repr=False, compare=False)
    _positions: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        sites = {site.path: site for site in walk.iter_sites(self.template)}
        # Searched block positions: top-level choices among specs (block or op types), {loc: path}.
        positions = {site.loc: p for p, site in sites.items()
                     if site.parent is None and all(isinstance(o, BaseModel) for o in site.choice.options)}
        object.__setattr__(self, "_sites", sites)
        object.__setattr__(self, "_paths", {p: site.choice for p, site in sites.items()})
        object.__setattr__(self, "_positions", positions)

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
        return parse_spec(self.finish(data) if self.finish else data)

    def is_valid(self, decision: Mapping[str, Any]) -> bool:
        try:
            self.fix(decision)
            return True
        except SpecError:
            return False

    def fix_repairing(self, decision: dict, repair: Repair, max_tries: int = 100) -> tuple[Arch, dict]:
        """(arch, decision) of the first valid decision reached from ``decision`` by ``repair``: where a block
        position comes out invalid (a group size that does not divide its expanded channels, say), ``repair``
        gets that position and proposes another decision. The one loop every "redraw the block that broke"
        caller shares (sampling, the most likely point, warm-up variants, covering sets)."""
        for _ in range(max_tries):
            try:
                return self.fix(decision), decision
            except SpecError as err:
                proposal = repair(self.failing_block(err), decision)
                if proposal is None:
                    raise
                decision = proposal
        raise SpecError(f"space {self.name!r}: no valid point after {max_tries} repairs")

    def sample(self, rng: np.random.Generator, max_tries: int = 1000) -> dict[str, Any]:
        """A valid decision drawn with ``rng``: uniform over the valid points where they are common (the first
        valid one of ``REJECTION_DRAWS`` uniform draws); where they are rare (a space of many positions, each
        with some invalid options), the last draw repaired block by block, each failing block's own choices
        drawn again uniformly (as the controller repairs its samples), at most ``max_tries`` times."""
        for _ in range(REJECTION_DRAWS):
            decision = walk.sample(self.template, rng)
            if self.is_valid(decision):
                return decision

        def redraw(block: str | None, d: dict) -> dict:
            paths = self.own_choices(block) if block else list(self._paths)
            return {**d, **{p: self._paths[p].value(int(rng.integers(len(self._paths[p].options)))) for p in paths}}

        try:
            _, decision = self.fix_repairing(decision, redraw, max_tries)
        except SpecError:
            raise RuntimeError(f"space {self.name!r}: no valid point in {max_tries} repairs") from None
        return {p: decision[p] for p in self.active_paths(decision)}

    def sample_arch(self, rng: np.random.Generator) -> Arch:
        return self.fix(self.sample(rng))

    def match(self, spec) -> dict[str, Any] | None:
        """The decision that gives ``spec`` (ignoring name, dropout, drop-path, preprocessing), or None."""
        if self.decode is None:
            found = walk.match(self.template, spec, ignore=NOT_ARCHITECTURE)
            return None if found is None else {p: found[p] for p in self._paths if p in found}
        form = self.decode(spec)
        found = None if form is None else walk.match(self.template, form, ignore=_ignored(self.template))
        if found is None:
            return None
        decision = {p: found[p] for p in self._paths if p in found}
        try:  # the decoded form must build the very network: a decode that loses something is no match
            same = _same_network(self.fix(decision), spec)
        except SpecError:
            return None
        return decision if same else None

    def contains(self, arch: Arch) -> bool:
        return self.match(arch) is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "size": self.size(),
                "template": walk.dump(self.template)}

    # --- structure: found by walking the template, never by parsing paths -------------------------------
    def block_paths(self) -> list[str]:
        """The searched block positions, in network order."""
        return list(self._positions.values())

    def failing_block(self, err: Exception) -> str | None:
        """The searched block position a validation error points into (from ``SpecError.loc``), if any."""
        loc = tuple(getattr(err, "loc", ()))
        return next((self._positions[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in self._positions), None)

    def owner(self, path: str) -> str | None:
        """The searched block position a choice belongs to: itself, or the position whose option holds it."""
        site = self._sites[path]
        while site.parent is not None:
            site = self._sites[site.parent]
        return site.path if site.loc in self._positions else None

    def own_choices(self, block: str) -> list[str]:
        """A block position's own choices: its op and the choices nested under its ops, in walk order."""
        return [p for p in self._sites if self.owner(p) == block]

    def width_choices(self) -> list[str]:
        """Choices that set a width (output, head or node channels, or an expansion)."""
        widths = ("out_channels", "conv_channels", "expand_ratio", "expansion", "width", "channels")
        return [p for p, site in self._sites.items() if site.field in widths]

    def active_paths(self, decision: Mapping[str, Any], paths: list[str] | None = None) -> list[str]:
        """The choices (of ``paths``, default all) that shape the point: a choice nested in an option counts
        only when its parent choice picked that option."""
        def active(site: ChoiceSite) -> bool:
            return site.parent is None or (str(decision.get(site.parent)) == site.option
                                           and active(self._sites[site.parent]))
        return [p for p in (self._sites if paths is None else paths) if active(self._sites[p])]

    def block_options(self, block: str) -> list[dict[str, Any]]:
        """Every distinct assignment of one block position's own choices (its op and the choices nested under
        that op), e.g. 17 for an edgetpu-v2-224 position with skip."""
        own = [(p, self._sites[p].choice) for p in self.own_choices(block)]
        seen, out = set(), []
        for combo in itertools.product(*(range(len(c.options)) for _, c in own)):
            picked = {p: c.value(i) for (p, c), i in zip(own, combo)}
            key = tuple((p, str(picked[p])) for p in self.active_paths(picked, list(picked)))
            if key not in seen:
                seen.add(key)
                out.append(picked)
        return out

    def covering(self) -> Iterator[dict[str, Any]]:
        """Valid decisions that together contain every distinct layer of the space: for each stage, every
        pair of (its input channels, its output channels) with every block option at all its positions; and
        every stem and head choice with the last stage's channels. Assumes, as the classification spaces do,
        that a block's layers depend only on its own choices and those channel counts (strides are fixed).
        Latency tables are filled from these."""
        if not isinstance(self.template, Arch):
            raise SpecError(f"space {self.name!r}: a covering set is built for classification spaces only; "
                            "sample its points instead")
        top = {site.loc: p for p, site in self._sites.items() if site.parent is None}
        base = {p: c.value(0) for p, c in self._paths.items()}
        width = {s: top.get(("stages", s, "out_channels")) for s in range(len(self.template.stages))}
        width[-1] = top.get(("stem", "out_channels"))
        options = lambda path: self._paths[path].options if path else (None,)  # noqa: E731
        trials = []
        for s in range(len(self.template.stages)):
            before, after = width[s - 1], width[s]
            combos = [self.block_options(b) for loc, b in self._positions.items() if loc[1] == s]
            if not combos and after is None:
                continue
            for cin, cout in itertools.product(options(before), options(after)):
                for j in range(max((len(c) for c in combos), default=1)):
                    d = {**base, **{k: v for k, v in ((before, cin), (after, cout)) if k}}
                    for c in combos:
                        d.update(c[j % len(c)])
                    trials.append(d)
        last = [width[s] for s in range(len(self.template.stages)) if width[s]][-1:]
        ends = [p for loc, p in top.items() if loc[0] in ("stem", "head")] + last
        trials += [{**base, **dict(zip(ends, values))}
                   for values in itertools.product(*(self._paths[p].options for p in ends))]

        def first_option(block: str | None, d: dict) -> dict | None:  # an option that does not fit here
            first = self.block_options(block)[0] if block else None
            return None if first is None or d == {**d, **first} else {**d, **first}

        for d in trials:
            try:
                yield self.fix_repairing(d, first_option, len(self._positions) + 1)[1]
            except SpecError:
                continue

    def input_shape(self) -> tuple[int, int]:
        """(input size, input channels) of every point."""
        return self.template.input_size, self.template.in_channels

    def macs_range(self, rng: np.random.Generator, samples: int = 256) -> tuple[int, int]:
        """Smallest and largest MACs over ``samples`` valid points drawn with ``rng``."""
        macs = [count_arch(self.sample_arch(rng)).macs for _ in range(samples)]
        return min(macs), max(macs)


def _ignored(template) -> frozenset:
    """The paths ``match`` skips: training settings, wherever the backbone sits."""
    prefixes = [""] + (["backbone."] if isinstance(getattr(template, "backbone", None), BaseModel) else [])
    return frozenset(p + f for p in prefixes for f in NOT_ARCHITECTURE)


def _same_network(a, b) -> bool:
    """Whether two specs compute the same network, however they group it: the same layers in order (their
    paths aside), and the same settings outside the layer list (normalization, head initialisation, ...)."""
    def layers(spec):
        return [dataclasses.replace(layer, path="") for layer in spec_layers(spec)]

    def settings(spec):
        data = _architecture(spec)
        data.pop("nodes", None)
        (data.get("backbone") or data).pop("stages", None)
        return data

    return type(a) is type(b) and settings(a) == settings(b) and layers(a) == layers(b)


def _architecture(spec) -> dict:
    """A spec's data without the fields that are not architecture (``NOT_ARCHITECTURE``), for comparing."""
    data = spec.to_dict()
    for part in (data, data.get("backbone") or {}):
        for key in NOT_ARCHITECTURE:
            head, _, field = key.partition(".")
            if field:
                part.get(head, {}).pop(field, None)
            else:
                part.pop(head, None)
    return data
