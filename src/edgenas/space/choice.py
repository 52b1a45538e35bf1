"""``Choice`` and the one walk over a spec template that sampling, fixing, counting, matching and
serializing all share.

A template is a spec (an ``Arch`` built with ``model_construct``) in which a ``Choice`` may stand at any
field, list position or nested inside another choice's option. Paths are stable strings:
``stages[2].blocks[1]`` for a field or position, and ``stages[2].blocks[1]@gc_ibn.group_size`` for a choice
inside the ``gc_ibn`` option of the choice at ``stages[2].blocks[1]``. Decisions map paths to values (the
option itself for scalars, the option's label, e.g. its block type, for specs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator, Mapping

import numpy as np
from pydantic import BaseModel

from ..spec import SpecError


def label_of(option: Any) -> str:
    if isinstance(option, BaseModel):
        tag = getattr(option, "type", None)
        if tag is None:
            raise TypeError(f"a spec option needs a 'type' to label it: {option!r}")
        return str(tag)
    return str(option.value if isinstance(option, Enum) else option)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise ValueError("a Choice needs at least one option")
        labels = self.labels
        if len(set(labels)) != len(labels):
            raise ValueError(f"Choice options need distinct labels, got {labels}")

    @property
    def labels(self) -> list[str]:
        return [label_of(o) for o in self.options]

    def value(self, i: int) -> Any:
        """What a decision holds for option ``i``: the label of a spec option, the option itself otherwise."""
        option = self.options[i]
        return self.labels[i] if isinstance(option, BaseModel) else option

    def index(self, value: Any, path: str) -> int:
        """The option a decision value names: the scalar itself or the option's label."""
        labels = self.labels
        key = label_of(value) if not isinstance(value, str) else value
        if key in labels:
            return labels.index(key)
        raise SpecError(f"{path}: {value!r} is not one of {', '.join(labels)}")


def _children(node) -> Iterator[tuple[str, Any]]:
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield f".{name}", getattr(node, name)
    elif isinstance(node, (tuple, list)):
        for i, item in enumerate(node):
            yield f"[{i}]", item


def _join(path: str, suffix: str) -> str:
    return path + suffix if path else suffix.lstrip(".")


@dataclass(frozen=True)
class ChoiceSite:
    """Where a choice stands. ``loc`` is its place in the spec as data (``("stages", 2, "blocks", 1)``; a choice
    inside an option continues its parent's place: ``(..., "blocks", 1, "group_size")``); ``parent`` and
    ``option`` name the choice and the option it sits under (None at the top level)."""

    path: str  # the key decisions use
    choice: Choice
    loc: tuple
    parent: str | None = None
    option: str | None = None

    @property
    def field(self) -> str | int | None:
        return self.loc[-1] if self.loc else None


def iter_sites(node, path: str = "", loc: tuple = (), parent: str | None = None,
               option: str | None = None) -> Iterator[ChoiceSite]:
    """Every choice in the template, pre-order, including those inside every option of a choice."""
    if isinstance(node, Choice):
        yield ChoiceSite(path, node, loc, parent, option)
        for label, opt in zip(node.labels, node.options):
            yield from iter_sites(opt, f"{path}@{label}", loc, path, label)
        return
    for suffix, child in _children(node):
        key = suffix[1:] if suffix.startswith(".") else int(suffix[1:-1])
        yield from iter_sites(child, _join(path, suffix), loc + (key,), parent, option)


def iter_choices(node) -> Iterator[tuple[str, Choice]]:
    """Every (path, choice) of the template, in walk order."""
    return ((site.path, site.choice) for site in iter_sites(node))


def count(node) -> int:
    """Number of distinct points: a product over fields, a sum over a choice's options."""
    if isinstance(node, Choice):
        return sum(count(o) for o in node.options)
    total = 1
    for _, child in _children(node):
        total *= count(child)
    return total


def resolve(node, decision: Mapping[str, Any], path: str = "", used: set | None = None):
    """Plain data (dicts, lists, scalars) for the point ``decision`` picks; records the paths it used."""
    if isinstance(node, Choice):
        if path not in decision:
            raise SpecError(f"{path}: no decision for this choice (options: {', '.join(node.labels)})")
        i = node.index(decision[path], path)
        if used is not None:
            used.add(path)
        return resolve(node.options[i], decision, f"{path}@{node.labels[i]}", used)
    if isinstance(node, BaseModel):
        return {suffix[1:]: resolve(child, decision, _join(path, suffix), used) for suffix, child in _children(node)}
    if isinstance(node, (tuple, list)):
        return [resolve(child, decision, _join(path, suffix), used) for suffix, child in _children(node)]
    return node.value if isinstance(node, Enum) else node


def sample(node, rng: np.random.Generator, path: str = "", out: dict | None = None) -> dict:
    """A decision for every active choice, each option equally likely (the untrained controller)."""
    out = {} if out is None else out
    if isinstance(node, Choice):
        i = int(rng.integers(len(node.options)))
        option = node.options[i]
        out[path] = option.value if isinstance(option, Enum) else (node.labels[i] if isinstance(option, BaseModel)
                                                                    else option)
        sample(option, rng, f"{path}@{node.labels[i]}", out)
        return out
    for suffix, child in _children(node):
        sample(child, rng, _join(path, suffix), out)
    return out


def match(node, value, path: str = "", out: dict | None = None, ignore: frozenset = frozenset()) -> dict | None:
    """The decision that fixes the template to ``value``, or None when ``value`` is not a point of it."""
    out = {} if out is None else out
    if path in ignore:
        return out
    if isinstance(node, Choice):
        for label, option in zip(node.labels, node.options):
            trial = match(option, value, f"{path}@{label}", dict(out), ignore)
            if trial is not None:
                trial[path] = label if isinstance(option, BaseModel) else resolve(option, {})
                return trial
        return None
    if isinstance(node, BaseModel):
        if type(node) is not type(value):
            return None
        for suffix, child in _children(node):
            out = match(child, getattr(value, suffix[1:]), _join(path, suffix), out, ignore)
            if out is None:
                return None
        return out
    if isinstance(node, (tuple, list)):
        if not isinstance(value, (tuple, list)) or len(node) != len(value):
            return None
        for (suffix, child), item in zip(_children(node), value):
            out = match(child, item, _join(path, suffix), out, ignore)
            if out is None:
                return None
        return out
    return out if node == value else None


def dump(node):
    """JSON-ready form of a template: a choice becomes ``{"choice": [option, ...]}``."""
    if isinstance(node, Choice):
        return {"choice": [dump(o) for o in node.options]}
    if isinstance(node, BaseModel):
        return {suffix[1:]: dump(child) for suffix, child in _children(node)}
    if isinstance(node, (tuple, list)):
        return [dump(c) for c in node]
    return node.value if isinstance(node, Enum) else node
