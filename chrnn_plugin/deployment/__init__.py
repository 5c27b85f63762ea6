"""Export of trained classifiers to deployment formats, checked against PyTorch."""

from .onnx_export import (
    EXPORTER_PACKAGES,
    EXPORTERS,
    ClassifierLogits,
    OnnxDependencyError,
    OnnxParityError,
    check_export_packages,
    export_checked,
    export_onnx,
    onnx_max_abs_diff,
)

__all__ = [
    'EXPORTER_PACKAGES',
    'EXPORTERS',
    'ClassifierLogits',
    'OnnxDependencyError',
    'OnnxParityError',
    'check_export_packages',
    'export_checked',
    'export_onnx',
    'onnx_max_abs_diff',
]
