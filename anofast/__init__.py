"""anofast: fast, seeded, batched synthetic anomalies for industrial anomaly detection.

Importing anofast loads neither the C++ extension nor triton; backends are probed on first use.
"""

from __future__ import annotations

from anofast._backend import BackendUnavailableError
from anofast._rng import sample_seeds
from anofast.types import AnomalyBatch

__version__ = "0.1.0"

__all__ = ["AnomalyBatch", "BackendUnavailableError", "PerlinAnomaly", "sample_seeds", "__version__"]


def __getattr__(name: str):
    # Generators import lazily so that `import anofast` stays light.
    if name == "PerlinAnomaly":
        from anofast.synth.perlin import PerlinAnomaly

        return PerlinAnomaly
    if name == "data":
        import anofast.data as data

        return data
    raise AttributeError(f"module 'anofast' has no attribute {name!r}")
