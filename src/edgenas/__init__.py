"""edgenas: hardware-aware neural architecture search for on-device vision."""

__version__ = "0.1.0"

_LAZY = {  # torch-backed entry points load on first use, so ``edgenas.spec`` imports without torch
    "create_model": "edgenas.models",
    "list_models": "edgenas.models",
    "get_arch": "edgenas.models",
    "build_model": "edgenas.nn",
    "from_timm": "edgenas.models.timm_weights",
    "from_tflite": "edgenas.models.tflite_import",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgenas' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
