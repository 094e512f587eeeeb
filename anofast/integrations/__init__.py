"""Drop-in replacements for other libraries' generators (no dependency on those libraries).

- :mod:`anofast.integrations.anomalib`: anomalib 2.x's ``PerlinAnomalyGenerator`` and ``generate_perlin_noise``.
"""
