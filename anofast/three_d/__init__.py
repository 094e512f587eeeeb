"""3D anomalies: organized RGB-D / xyz (:class:`DepthAnomaly`, no open3d needed), unorganized point clouds
(:class:`PointCloudAnomaly`, open3d) and 3D file I/O (:mod:`anofast.three_d.io`).

Names import lazily, so that importing this package loads neither open3d nor the kernels.
"""

from __future__ import annotations

_LAZY = {
    "DepthAnomaly": ("anofast.three_d.depth", "DepthAnomaly"),
    "PointCloudAnomaly": ("anofast.three_d.pointcloud", "PointCloudAnomaly"),
    "io": ("anofast.three_d.io", None),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'anofast.three_d' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
