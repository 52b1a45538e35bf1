"""Reading the YAML and JSON that users write (arch files, run configs, ``--set`` values).

``yaml.safe_load`` alone keeps the last of two equal keys and drops the first without a word, recurses once
per nesting level (a deep enough file ends in ``RecursionError``), and lets a few aliases stand for billions
of values. Here each of those is a one-line ``SpecError`` that names the source and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import SpecError

# An arch file nests 6 levels (arch, stages, a stage, blocks, a block, a field) and a config 3; 32 leaves room
# for whatever a later schema adds while staying far from Python's recursion limit.
MAX_DEPTH = 32
# The largest zoo arch holds 251 values; a million can only come from aliases multiplying one another.
MAX_VALUES = 1_000_000


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that edgenas will not read; the message is ours, not the parser's."""


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels",
                               problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        first_at: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` keys may be overridden: that is their use
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_at.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the constructor below reports it
                continue
            if first is not key_node:
                raise _Refused(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark,
                               note=f" (first at line {first.start_mark.line + 1})")
        return super().construct_mapping(node, deep)


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse_yaml(text: str, source: str):
    """``text`` as YAML; errors start with ``source`` (a file name or ``--set key``)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects from user text
    except _Refused as err:
        raise SpecError(f"{source}: {err.problem}{_where(err.problem_mark)}{err.note or ''}") from None
    except yaml.MarkedYAMLError as err:
        raise SpecError(f"{source}: not valid YAML ({err.problem or err.context}"
                        f"{_where(err.problem_mark or err.context_mark)})") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an integer of more digits than int() takes
        raise SpecError(f"{source}: not valid YAML ({str(err).splitlines()[0]})") from None
    _check_size(data, source)
    return data


def parse_json(text: str, source: str):
    try:
        data = json.loads(text)
    except RecursionError:
        raise SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, or an integer of more digits than int() takes
        raise SpecError(f"{source}: not valid JSON ({err})") from None
    _check_size(data, source)
    return data


def read_data(path: str | Path, fmt: str | None = None):
    """A YAML or JSON file (``fmt``, else by suffix: ``.json`` is JSON, anything else YAML) as plain data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte {err.start}: 0x{raw[err.start]:02x}); is it a binary "
                        "file?") from None
    if (fmt or ("json" if path.suffix == ".json" else "yaml")) == "json":
        return parse_json(text, str(path))
    return parse_yaml(text, str(path))


def _check_size(data, source: str) -> None:
    """Refuse data too deep or too large, each alias counted as often as it is used, in time linear in the
    distinct values (a shared value's depth is checked where it first appears)."""
    sizes: dict[int, int] = {}

    def size(value, depth: int) -> int:
        if depth > MAX_DEPTH:  # also where a value contains itself (`&a [*a]`): it is infinitely deep
            raise SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels")
        if not isinstance(value, (dict, list)):
            return 1
        if id(value) not in sizes:
            children = value.values() if isinstance(value, dict) else value
            sizes[id(value)] = 1 + sum(size(child, depth + 1) for child in children)
        return sizes[id(value)]

    if size(data, 1) > MAX_VALUES:
        raise SpecError(f"{source}: holds more than {MAX_VALUES:,} values once its aliases are expanded")
