"""anofast: fast, seeded, batched synthetic anomalies for industrial anomaly detection.

Importing anofast loads neither the C++ extension nor triton; backends are probed on first use.
"""

from __future__ import annotations

from anofast._backend import BackendUnavailableError
from anofast._rng import sample_seeds
from anofast.types import AnomalyBatch

__version__ = "0.1.0"

# Public names that import lazily, so that `import anofast` stays light: name -> (module, attribute or None).
_LAZY = {
    "PerlinAnomaly": ("anofast.synth.perlin", "PerlinAnomaly"),
    "CutPaste": ("anofast.synth.cutpaste", "CutPaste"),
    "NaturalSynthetic": ("anofast.synth.nsa", "NaturalSynthetic"),
    "FeatureNoise": ("anofast.synth.feature", "FeatureNoise"),
    "OneOf": ("anofast.synth.compose", "OneOf"),
    "data": ("anofast.data", None),
    "foreground": ("anofast.foreground", None),
    "integrations": ("anofast.integrations", None),
    "three_d": ("anofast.three_d", None),
    "diffusion": ("anofast.diffusion", None),
    "eval": ("anofast.eval", None),
}

__all__ = ["AnomalyBatch", "BackendUnavailableError", "sample_seeds", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'anofast' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
