"""Export of trained classifiers to deployment formats, checked against PyTorch."""

from .onnx_export import (
    EXPORTERS,
    ClassifierLogits,
    OnnxParityError,
    export_checked,
    export_onnx,
    onnx_max_abs_diff,
)

__all__ = [
    'EXPORTERS',
    'ClassifierLogits',
    'OnnxParityError',
    'export_checked',
    'export_onnx',
    'onnx_max_abs_diff',
]
