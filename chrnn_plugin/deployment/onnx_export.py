"""ONNX export of a classifier with an HRNN neck, and its check with onnxruntime.

The wavefront sweep is a Python loop over the anti-diagonals of each level's
grid, so every exporter unrolls it for the traced height and width: the
exported graph computes the right answer for that input size only. Its input
has fixed height and width dimensions, so onnxruntime refuses any other size
(``Got invalid dimensions for input``) instead of returning a wrong answer.
The batch dimension can be left free.
"""

import importlib
import os
import os.path as osp
import shutil
import tempfile
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: ``'torchscript'``: ``torch.onnx.export(dynamo=False)``, the tracer most
#: deployment tooling calls; ``'dynamo'``: the ``torch.export``-based exporter.
EXPORTERS = ('torchscript', 'dynamo')
INPUT_NAME = 'images'
OUTPUT_NAME = 'logits'
#: The packages each exporter needs, onnxruntime for the parity check included
#: (all in the ``tests`` extra).
EXPORTER_PACKAGES = {
    'torchscript': ('onnx', 'onnxruntime'),
    'dynamo': ('onnx', 'onnxscript', 'onnxruntime'),
}
# The TorchScript exporter's warning for an advanced index with two or more
# index tensors (see export_checked).
_ADVANCED_INDEX_WARNING = r'Exporting aten::index operator of advanced indexing'


class OnnxParityError(RuntimeError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


class OnnxDependencyError(ImportError):
    """A package the export or its check needs is not installed."""


def check_export_packages(exporter: str) -> None:
    """Import what ``exporter`` and the onnxruntime check need, or say what to install.

    Called before any work, so that a missing package is not found after the
    model is built and traced, in a traceback from inside torch.

    Args:
        exporter (str): One of :data:`EXPORTERS`.

    Raises:
        OnnxDependencyError: A package is missing (or fails to import); the
            message names the ``pip install`` that provides them all.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    packages = EXPORTER_PACKAGES[exporter]
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise OnnxDependencyError(
            f'the {exporter} export and its onnxruntime check need {", ".join(packages)}; '
            f'not installed: {", ".join(missing)}. Install them with '
            f"`pip install {' '.join(packages)}` (or the tests extra: `pip install -e '.[tests]'`)"
        )


class ClassifierLogits(nn.Module):
    """An MMPretrain ``ImageClassifier`` as ``images -> logits``.

    ``images`` are what the data preprocessor hands the backbone: ``(N, C, H, W)``
    float, already normalised. ``logits`` are the head's class scores before the
    softmax, ``(N, num_classes)``.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(images, mode='tensor')


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f'input_shape must be three positive ints (C, H, W), got {shape!r}')
    return shape


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str,
    *,
    exporter: str = 'torchscript',
    opset: int = 18,
    dynamic_batch: bool = False,
) -> None:
    """Write ``model`` (``images -> logits``, on the CPU, in eval mode) to ``path``.

    Args:
        model (nn.Module): takes one ``(N, C, H, W)`` tensor.
        input_shape (Sequence[int]): ``(C, H, W)`` the graph is traced for.
        path (str): the ``.onnx`` file to write; weights are stored inside it.
        exporter (str): one of :data:`EXPORTERS`.
        opset (int): ONNX opset version.
        dynamic_batch (bool): leave the batch dimension free; else it is 1.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    channels, height, width = _check_input_shape(input_shape)
    # torch.export specialises a dimension traced at size 1, so trace a dynamic batch at 2.
    example = torch.randn(2 if dynamic_batch else 1, channels, height, width)
    if exporter == 'torchscript':
        with warnings.catch_warnings():
            # Sizes read as Python ints are constants of the trace: intended, as
            # the sweep is unrolled for this height and width anyway.
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                path,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=(
                    {INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}} if dynamic_batch else None
                ),
            )
        return
    dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim('batch')}} if dynamic_batch else None
    program = torch.onnx.export(
        _NamedInput(model).eval(),
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        verbose=False,
    )
    # One self-contained file, as the TorchScript exporter writes.
    program.save(path, external_data=False)


class _NamedInput(nn.Module):
    # torch.export keys dynamic shapes by the name of forward's argument.
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


def onnx_max_abs_diff(
    path: str,
    model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1,),
    seed: int = 0,
) -> dict[int, float]:
    """Max abs difference between onnxruntime's and ``model``'s outputs, per batch size.

    Inputs are standard normal, drawn from a generator seeded with ``seed``.
    """
    import onnxruntime

    channels, height, width = _check_input_shape(input_shape)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(seed)
    diffs = {}
    for batch in batch_sizes:
        images = torch.randn(batch, channels, height, width, generator=generator)
        with torch.no_grad():
            expected = model(images)
        (got,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
        if tuple(got.shape) != tuple(expected.shape):
            raise OnnxParityError(
                f'batch {batch}: ONNX output has shape {tuple(got.shape)}, PyTorch '
                f'{tuple(expected.shape)}'
            )
        diffs[batch] = float((torch.from_numpy(got) - expected).abs().max())
    return diffs


def export_checked(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str,
    *,
    atol: float,
    exporter: str = 'torchscript',
    opset: int = 18,
    dynamic_batch: bool = False,
    check_batch: int = 3,
) -> dict[int, float]:
    """Export ``model``, check it with onnxruntime, and write ``path`` only if it matches.

    The graph is written to a temporary file beside ``path`` and renamed to
    ``path`` only when the max abs difference from PyTorch is at most ``atol``
    at batch 1 and, with ``dynamic_batch``, at ``check_batch``. Otherwise the
    temporary file is removed and :class:`OnnxParityError` is raised; an
    existing ``path`` is left as it was. The file gets the mode any new file
    gets (``0o666`` less the umask).

    Args:
        model (nn.Module): ``images -> logits``; moved to the CPU, in eval mode.
        input_shape (Sequence[int]): ``(C, H, W)`` the graph is traced for.
        path (str): The ``.onnx`` file to write.
        atol (float): The largest max abs difference from PyTorch accepted.
        exporter (str): One of :data:`EXPORTERS`.
        opset (int): ONNX opset version.
        dynamic_batch (bool): Leave the batch dimension free; else it is 1.
        check_batch (int): The second batch size checked with ``dynamic_batch``.

    Returns:
        dict[int, float]: max abs difference per checked batch size.

    Raises:
        OnnxDependencyError: onnx, onnxruntime (or, for ``'dynamo'``,
            onnxscript) is not installed; raised before any export.
        OnnxParityError: The graph differs from PyTorch by more than ``atol``.
    """
    if not atol >= 0:
        raise ValueError(f'atol must be a number >= 0, got {atol!r}')
    if dynamic_batch and (not isinstance(check_batch, int) or check_batch < 2):
        raise ValueError(f'check_batch must be an int >= 2, got {check_batch!r}')
    check_export_packages(exporter)
    model = model.cpu().eval()
    # The graph is written inside a private temporary directory beside `path`
    # (same file system, so the rename is atomic). The file itself is created by
    # the exporter's open(), so its mode follows the umask as any file the user
    # writes; mkstemp would have made it 0600.
    temp_dir = tempfile.mkdtemp(prefix='.export-', dir=osp.dirname(osp.abspath(path)))
    temp_path = osp.join(temp_dir, 'model.onnx')
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter warns about every advanced index with
            # several index tensors that "if indices include negative values,
            # the exported graph will produce incorrect results". The neck's
            # sweep gather was one (it is now an index_select, which does not
            # warn); a wrong gather would not go unnoticed anyway: the graph
            # is compared with PyTorch just below.
            warnings.filterwarnings('ignore', message=_ADVANCED_INDEX_WARNING, category=UserWarning)
            export_onnx(
                model,
                input_shape,
                temp_path,
                exporter=exporter,
                opset=opset,
                dynamic_batch=dynamic_batch,
            )
        batch_sizes = (1, check_batch) if dynamic_batch else (1,)
        diffs = onnx_max_abs_diff(temp_path, model, input_shape, batch_sizes)
        worst = max(diffs.values())
        if not worst <= atol:
            raise OnnxParityError(
                f'ONNX output differs from PyTorch by {worst:.3g} (max abs, per batch size: '
                f'{diffs}), above the tolerance {atol:g}; {path} not written'
            )
        os.replace(temp_path, path)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return diffs
