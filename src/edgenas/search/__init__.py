"""One-shot hardware-aware search: the weight-sharing supernet and the TuNAS controller."""

from .controller import Controller, reward
from .supernet import Supernet, recalibrate_bn
from .job import search

__all__ = ["Controller", "Supernet", "recalibrate_bn", "reward", "search"]
