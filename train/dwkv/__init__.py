"""Delta-WKV MRI super-resolution: PyTorch reference model, scan implementations, checkpoints."""

from .model import DeltaWKV, ModelConfig, count_parameters
from .scan import (
    available_scans,
    delta_scan,
    get_scan,
    register_scan,
    scan_chunked,
    scan_loop,
    scan_order,
)

__all__ = [
    "DeltaWKV",
    "ModelConfig",
    "count_parameters",
    "available_scans",
    "delta_scan",
    "get_scan",
    "register_scan",
    "scan_chunked",
    "scan_loop",
    "scan_order",
]
