"""ONNX export and torch.jit.trace of whole classifiers give PyTorch's numbers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from chrnn_plugin.deployment import (
    ClassifierLogits,
    OnnxParityError,
    export_checked,
    onnx_max_abs_diff,
)

onnxruntime = pytest.importorskip('onnxruntime')

REPO_ROOT = Path(__file__).resolve().parents[2]
# ResNet_CIFAR has stride 8: a 3x5 map, and with an extra level a 2x3 one
# (ceil mode), which the cross-scale pooling reaches with uneven bins.
IMAGE_SHAPE = (3, 24, 40)
ATOL = 1e-5


def tiny_classifier_cfg(neck_type: str, extra_levels: int) -> dict:
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8, out_indices=(3,)
        ),
        neck=dict(
            type=neck_type,
            in_channels=64,
            hidden_channels=6,
            out_channels=5,
            extra_levels=extra_levels,
        ),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=5 * (1 + extra_levels)),
    )


def tiny_classifier(neck_type: str, extra_levels: int) -> ClassifierLogits:
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    classifier = MODELS.build(tiny_classifier_cfg(neck_type, extra_levels))
    # Non-trivial BatchNorm statistics, so that eval mode matters.
    classifier.train()
    with torch.no_grad():
        classifier(torch.randn(4, *IMAGE_SHAPE), mode='tensor')
    return ClassifierLogits(classifier).eval()


CASES = [
    pytest.param(neck, levels, id=f'{neck}-{levels + 1}level')
    for neck in ('HSRNNeck', 'HLSTMNeck')
    for levels in (0, 1)
]


@pytest.mark.parametrize('neck_type, extra_levels', CASES)
def test_torchscript_exporter_matches_pytorch_with_dynamic_batch(neck_type, extra_levels, tmp_path):
    model = tiny_classifier(neck_type, extra_levels)
    path = tmp_path / 'model.onnx'
    diffs = export_checked(
        model, IMAGE_SHAPE, str(path), atol=ATOL, exporter='torchscript', dynamic_batch=True
    )
    assert path.is_file()
    assert set(diffs) == {1, 3}
    assert max(diffs.values()) <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize('neck_type, extra_levels', CASES)
def test_dynamo_exporter_matches_pytorch_with_dynamic_batch(neck_type, extra_levels, tmp_path):
    model = tiny_classifier(neck_type, extra_levels)
    path = tmp_path / 'model.onnx'
    diffs = export_checked(
        model, IMAGE_SHAPE, str(path), atol=ATOL, exporter='dynamo', dynamic_batch=True
    )
    # The batch axis really is free: batch 3 runs and matches.
    assert set(diffs) == {1, 3}
    assert max(diffs.values()) <= ATOL


def test_fixed_batch_export_has_the_input_as_input(tmp_path):
    # The in-place scatter once made the traced output a constant of the graph.
    model = tiny_classifier('HSRNNeck', 0)
    path = tmp_path / 'model.onnx'
    export_checked(model, IMAGE_SHAPE, str(path), atol=ATOL, exporter='torchscript')
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [tuple(i.shape) for i in session.get_inputs()] == [(1, *IMAGE_SHAPE)]
    first, second = (torch.randn(1, *IMAGE_SHAPE).numpy() for _ in range(2))
    out_first = session.run(None, {'images': first})[0]
    out_second = session.run(None, {'images': second})[0]
    assert abs(out_first - out_second).max() > 1e-3


def test_other_input_size_is_refused_by_onnxruntime(tmp_path):
    model = tiny_classifier('HLSTMNeck', 1)
    path = tmp_path / 'model.onnx'
    export_checked(model, IMAGE_SHAPE, str(path), atol=ATOL, dynamic_batch=True)
    with pytest.raises(Exception, match='invalid dimensions for input: images'):
        onnx_max_abs_diff(str(path), model, (3, 32, 40), (2,))


@pytest.mark.parametrize('neck_type', ['HSRNNeck', 'HLSTMNeck'])
def test_jit_trace_matches_eager_at_other_batch_sizes(neck_type):
    model = tiny_classifier(neck_type, 1)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(2, *IMAGE_SHAPE), check_trace=False)
        for batch in (1, 2, 5):
            images = torch.randn(batch, *IMAGE_SHAPE)
            torch.testing.assert_close(traced(images), model(images), rtol=0, atol=1e-5)


class ShiftedWhenExported(torch.nn.Module):
    """Adds 1 to the logits inside an ONNX export only: a graph that is wrong."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images):
        logits = self.model(images)
        return logits + 1 if torch.onnx.is_in_onnx_export() else logits


def test_mismatch_is_refused_and_leaves_no_file(tmp_path):
    model = ShiftedWhenExported(tiny_classifier('HSRNNeck', 0))
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'previous export')
    with pytest.raises(OnnxParityError, match='above the tolerance'):
        export_checked(model, IMAGE_SHAPE, str(path), atol=1e-3)
    assert path.read_bytes() == b'previous export'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']


def test_bad_arguments_are_named():
    model = tiny_classifier('HSRNNeck', 0)
    with pytest.raises(ValueError, match='exporter must be one of'):
        export_checked(model, IMAGE_SHAPE, 'unused.onnx', atol=1e-4, exporter='tensorrt')
    with pytest.raises(ValueError, match=r'input_shape must be three positive ints'):
        export_checked(model, (24, 40), 'unused.onnx', atol=1e-4)
    with pytest.raises(ValueError, match='atol must be a number >= 0'):
        export_checked(model, IMAGE_SHAPE, 'unused.onnx', atol=-1.0)
    assert not os.path.exists('unused.onnx')


# ---------------------------------------------------------------- the tool

SHIFTED_NECK_SOURCE = """
import torch
from mmpretrain.registry import MODELS

from chrnn_plugin.models.necks.hrnn_neck import HSRNNeck


@MODELS.register_module()
class ShiftedWhenExportedHSRNNeck(HSRNNeck):
    # Same weights as HSRNNeck; a wrong graph, for the tool's refusal path.
    def forward(self, inputs):
        (vec,) = super().forward(inputs)
        return (vec + 1 if torch.onnx.is_in_onnx_export() else vec,)
"""

CONFIG_SOURCE = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['chrnn_plugin', 'shifted_neck'], allow_failed_imports=False)
model = {model!r}
"""


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A config and a checkpoint of a tiny two-level HLSTM classifier."""
    (tmp_path / 'shifted_neck.py').write_text(SHIFTED_NECK_SOURCE)
    config = tmp_path / 'tiny.py'
    config.write_text(CONFIG_SOURCE.format(model=tiny_classifier_cfg('HSRNNeck', 1)))
    model = tiny_classifier('HSRNNeck', 1).classifier
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, checkpoint)
    return config, checkpoint


def run_tool(tmp_path, *args):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(tmp_path), env.get('PYTHONPATH', '')) if p
    )
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools/deployment/pytorch2onnx.py'), *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_tool_exports_a_checked_dynamic_batch_model(tmp_path, tiny_checkpoint):
    config, checkpoint = tiny_checkpoint
    result = run_tool(tmp_path, config, checkpoint, '--shape', 24, 40, '--dynamic-batch')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accepts that input size only' in result.stdout
    assert 'batch 1: max abs diff' in result.stdout
    assert 'batch 3: max abs diff' in result.stdout
    path = tmp_path / 'epoch_1.onnx'
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == ['batch', 3, 24, 40]
    assert session.get_outputs()[0].name == 'logits'


def test_tool_refuses_a_wrong_graph_and_writes_nothing(tmp_path, tiny_checkpoint):
    config, checkpoint = tiny_checkpoint
    out = tmp_path / 'wrong.onnx'
    result = run_tool(
        tmp_path,
        config,
        checkpoint,
        '--shape',
        24,
        40,
        '--out',
        out,
        '--cfg-options',
        'model.neck.type=ShiftedWhenExportedHSRNNeck',
    )
    assert result.returncode == 1
    assert 'REFUSED' in result.stderr and 'above the tolerance' in result.stderr
    assert not list(tmp_path.glob('*.onnx'))
