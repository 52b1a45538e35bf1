"""The base of the three spec documents (``Arch``, ``Network``, ``Detector``): the schema version check, parsing
from plain data or a file, ``replace`` that validates once, and JSON/YAML output with every ``type``
discriminator kept. A document class holds only its fields and the checks that need them.
"""

from __future__ import annotations

import json
import re
import weakref
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from ..io import write_atomic
from .blocks import Spec
from .datafile import read_data
from .errors import SpecError, from_validation_error

SCHEMA_VERSION = 1
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{name!r} is not a node name (letters, digits and _, not starting with a digit)")
    return name


NodeName = Annotated[str, AfterValidator(_identifier)]  # a graph node's name, as a feature is referred to
Level = Annotated[int, Field(ge=0, le=10)]  # log2 of a node's nominal stride; 10 = 1024, past any input we allow


# The documents whose ``check`` passed, by identity (a copy is checked again where it is used). Not a private
# attribute: pydantic's ``==`` compares those, and a checked document equals an unchecked one.
_CHECKED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Document(Spec):
    """A whole spec that is read from and written to a file. ``LEAD`` names the fields written first (and kept
    in a compact file even at their default), so a file says what it is in its first lines."""

    LEAD: ClassVar[tuple[str, ...]] = ("schema_version", "name")
    NOUN: ClassVar[str] = "a spec"  # for "... must be a mapping"

    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data):
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise SpecError(f"schema_version: {data['schema_version']!r} is not supported "
                            f"(this edgenas reads {SCHEMA_VERSION})", loc=("schema_version",))
        return data

    @model_validator(mode="after")
    def _check_once(self):
        """``check``, once per object: pydantic runs after-validators again on a document passed in whole (as
        ``replace`` passes an unchanged backbone), and a valid document stays valid."""
        if _CHECKED.get(id(self)) is not self:
            self.check()
            _CHECKED[id(self)] = self
        return self

    def check(self) -> None:
        """The checks that need several fields (a graph's shapes); each raises a ``SpecError`` naming the place."""

    @classmethod
    def parse(cls, data) -> Self:
        """Validate plain data (as from JSON/YAML) into this document; raise a one-line ``SpecError``."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise SpecError(f"{cls.NOUN} must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise from_validation_error(err) from None

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read this document from a ``.json``, ``.yaml`` or ``.yml`` file; errors start with the path."""
        return at_path(path, cls.parse)

    def replace(self, **changes) -> Self:
        """A copy with top-level fields changed, all at once, validated once: the fields left alone are passed
        as the valid objects they are, so only this document's own checks run again (not its backbone's)."""
        return self.parse({**dict(self), **changes})

    # --- serialization -------------------------------------------------------------------------------
    def to_dict(self, compact: bool = False) -> dict:
        """Plain data, the ``LEAD`` fields first and every ``type`` first in its mapping. ``compact`` leaves out
        fields at their default value (the lead fields and discriminators always stay), which loads the same."""
        data = self.model_dump(mode="json", exclude_defaults=compact)
        data = {k: _typed(getattr(self, k), v, compact) for k, v in data.items()}
        return {**{k: getattr(self, k) for k in self.LEAD}, **data}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(compact=True), sort_keys=False, default_flow_style=None, width=110)

    def save(self, path: str | Path) -> None:
        """Write JSON or YAML by suffix, atomically (temporary name, then rename)."""
        path = Path(path)
        write_atomic(path, self.to_json() if path.suffix == ".json" else self.to_yaml())


def _typed(model: BaseModel, data: Any, compact: bool) -> Any:
    """``data`` (the dump of ``model``) with each nested document written by its own ``to_dict`` and each
    ``type`` discriminator put first, even where it equals the default, so files read unambiguously."""
    if isinstance(model, Document):
        return model.to_dict(compact)
    if isinstance(model, BaseModel) and isinstance(data, dict):
        out = {k: _typed(getattr(model, k), v, compact) if k in type(model).model_fields else v
               for k, v in data.items()}
        return {"type": model.type, **out} if "type" in type(model).model_fields else out
    if isinstance(model, tuple) and isinstance(data, list):
        return [_typed(m, d, compact) for m, d in zip(model, data)]
    return data


def at_path(path: str | Path, parse):
    """``parse`` of the data in ``path``, its errors prefixed with the path."""
    data = read_data(path)
    try:
        return parse(data)
    except SpecError as err:
        raise SpecError(f"{path}: {err}", loc=err.loc) from None
