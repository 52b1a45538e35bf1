"""Search spaces on the spec: a ``Choice`` may stand at any field; one walk serves every verb."""

from .choice import Choice, iter_choices
from .space import SearchSpace
from .spaces import SPACES, get_space

__all__ = ["Choice", "iter_choices", "SearchSpace", "SPACES", "get_space"]
