"""MMPretrain's own tools (``mmpretrain/.mim/tools``) on our models, as the FAQ describes them.

Each test runs the upstream script as a user would, on the demo configs with untrained
weights, and checks the FAQ's statement or workaround (``docs/faq.md``, "MMPretrain's own
tools on our models"); the workarounds are the FAQ's own code blocks, run as written.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import mmcv
import mmengine
import mmpretrain
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image

from chrnn_plugin.datasets import SpatialRelations
from tests.docs.doc_commands import DOCS, REPO_ROOT, blocks

UPSTREAM = Path(mmpretrain.__file__).parent / '.mim' / 'tools'
DEMO = REPO_ROOT / 'configs' / 'demo'
FAQ = DOCS / 'faq.md'

pytestmark = pytest.mark.skipif(
    not UPSTREAM.is_dir(), reason=f'MMPretrain ships no tools here ({UPSTREAM})'
)


def faq_file(name: str) -> str:
    """The FAQ's code block that starts with the comment line ``# <name>``."""
    for block in blocks(FAQ):
        if block.text.startswith(f'# {name}'):
            return block.text
    raise AssertionError(f'docs/faq.md has no code block for {name}')


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH')) if p)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope='module')
def project(tmp_path_factory) -> Path:
    """A user's folder: configs linked in, demo checkpoints of untrained models."""
    root = tmp_path_factory.mktemp('upstream')
    (root / 'configs').symlink_to(REPO_ROOT / 'configs')
    for neck in ('hsrn', 'hlstm'):
        cfg = Config.fromfile(str(DEMO / f'{neck}.py'))
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        (root / 'work_dirs' / 'demo' / neck).mkdir(parents=True)
        torch.save({'state_dict': model.state_dict()}, root / f'work_dirs/demo/{neck}/epoch_4.pth')
    return root


def test_upstream_get_flops_counts_the_recurrent_cells_as_zero(project):
    upstream = ok(
        run(
            [
                str(UPSTREAM / 'analysis_tools/get_flops.py'),
                'configs/demo/hlstm.py',
                '--shape',
                '56',
            ],
            project,
        )
    )
    ours = ok(
        run(
            ['tools/analysis_tools/get_flops.py', 'configs/demo/hlstm.py', '--shape', '56'],
            REPO_ROOT,
        )
    )
    upstream_total = re.search(r'Flops: ([\d.]+)M', upstream).group(1)
    ours_total = re.search(r'^total\s+ImageClassifier\s+\S+\s+([\d.]+)M', ours, re.M).group(1)
    # the recurrent products (baddbmm) are in our count, 0 in upstream's table
    assert re.search(r'neck\.levels\.0\.cell\s*\|\s*[\d.]+K\s*\|\s*0\s*\|', upstream), upstream
    assert re.search(r'\bbaddbmm [\d.]+M', ours), ours
    assert float(ours_total) > float(upstream_total)
    faq = FAQ.read_text()
    assert f'`Flops: {upstream_total}M`' in faq and f'{ours_total} M' in faq, (
        f'the FAQ should quote upstream {upstream_total}M and ours {ours_total} M'
    )


def _faq_config(project: Path, name: str) -> Path:
    path = project / name
    path.write_text(faq_file(name))
    return path


def test_vis_cam_config_of_the_faq_feeds_a_saved_sample_as_the_model_trained_on_it(project):
    cfg = Config.fromfile(str(_faq_config(project, 'work_dirs/hsrn_files.py')))
    file_pipeline = cfg.test_dataloader.dataset.pipeline
    assert file_pipeline[0]['type'] == 'LoadImageFromFile'  # what vis_cam.py needs
    # our own dataloaders still use the in-memory pipeline
    demo = Config.fromfile(str(DEMO / 'hsrn.py'))
    assert demo.test_dataloader.dataset.pipeline == demo.pipeline == [dict(type='PackInputs')]

    sample = SpatialRelations(split='test', num_samples=1)[0]
    mmcv.imwrite(sample['img'], str(project / 'sample.png'))
    from_file = Compose([TRANSFORMS.build(t) for t in file_pipeline])(
        {'img_path': str(project / 'sample.png')}
    )
    in_memory = Compose([TRANSFORMS.build(t) for t in demo.pipeline])(dict(sample))
    assert torch.equal(from_file['inputs'], in_memory['inputs'])


@pytest.mark.parametrize('neck', ['hsrn', 'hlstm'])
def test_target_layer_of_the_faq_is_the_neck_map(neck):
    cfg = Config.fromfile(str(DEMO / f'{neck}.py'))
    model = MODELS.build(cfg.model)
    faq = FAQ.read_text()
    layer = re.search(r'--target-layers (\S+)', faq).group(1)
    outputs = []
    dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        maps = model.neck.forward_maps(model.backbone(torch.zeros(1, 3, 56, 56)))
    # vis_cam.py takes a 4-D output as (N, C, H, W): the map the neck pools
    (output,) = outputs
    assert output.shape == maps[0].shape and output.dim() == 4


def test_vis_cam_runs_with_the_faq_workarounds(project):
    """Needs the FAQ's pins (not installed by the project): skipped without them."""
    pytest.importorskip('pkg_resources', reason='setuptools>=81 has no pkg_resources')
    pytest.importorskip('pytorch_grad_cam', reason='grad-cam is not installed')
    _faq_config(project, 'work_dirs/hsrn_files.py')
    mmcv.imwrite(SpatialRelations(split='test', num_samples=1)[0]['img'], str(project / 's.png'))
    out = ok(
        run(
            [
                str(UPSTREAM / 'visualization/vis_cam.py'),
                's.png',
                'work_dirs/hsrn_files.py',
                'work_dirs/demo/hsrn/epoch_4.pth',
                '--target-layers',
                'neck.levels.0',
                '--save-path',
                'cam.png',
            ],
            project,
        )
    )
    assert 'Automatically choose' not in out
    assert Image.open(project / 'cam.png').size == (56, 56)


def test_browse_dataset_default_mode_and_the_faq_workarounds(project):
    import inspect

    import matplotlib._tight_bbox as tight_bbox

    browse = [
        str(UPSTREAM / 'visualization/browse_dataset.py'),
        'configs/demo/hsrn.py',
        '--not-show',
        '-n',
        '1',
    ]
    plain = run([*browse, '--output-dir', 'browse_plain'], project)
    if 'renderer' in inspect.signature(tight_bbox.adjust_bbox).parameters:
        assert plain.returncode != 0
        assert "adjust_bbox() missing 1 required positional argument: 'renderer'" in plain.stderr
    (project / 'browse_dataset_mpl.py').write_text(faq_file('browse_dataset_mpl.py'))
    ok(run(['browse_dataset_mpl.py', *browse, '--output-dir', 'browse_fixed'], project))
    ok(
        run(
            [*browse, '--mode', 'original', '--rescale-factor', '4', '--output-dir', 'browse_orig'],
            project,
        )
    )
    for folder in ('browse_fixed', 'browse_orig'):
        assert (project / folder / '0.jpg').is_file(), folder


def _red_minus_blue_at_a(png: Path, box: tuple, scale: int) -> float:
    """Mean red minus mean blue over object A (red, drawn at ``scale``) in an RGB image."""
    y, x, h, w = (v * scale for v in box)
    patch = np.asarray(Image.open(png).convert('RGB'), dtype=float)[y : y + h, x : x + w]
    return float(patch[..., 0].mean() - patch[..., 2].mean())


def test_analyze_results_draws_bgr_images_right_with_the_faq_wrapper(project):
    dataset = SpatialRelations(split='test', num_samples=8)
    # a sample whose A is clear of the label text analyze_results writes at the top left
    index = next(
        i
        for i in range(len(dataset))
        if next(o for o in dataset[i]['objects'] if o['role'] == 'A')['box'][0] > 12
    )
    box = next(o for o in dataset[index]['objects'] if o['role'] == 'A')['box']
    label = int(dataset[index]['gt_label'])
    result = dict(
        sample_idx=index,
        gt_label=torch.tensor([label]),
        pred_label=torch.tensor([label]),
        pred_score=torch.nn.functional.one_hot(torch.tensor(label), 4).float(),
    )
    mmengine.dump([result], str(project / 'results.pkl'))
    (project / 'analyze_results_bgr.py').write_text(faq_file('analyze_results_bgr.py'))
    analyze = [
        str(UPSTREAM / 'analysis_tools/analyze_results.py'),
        'configs/demo/hsrn.py',
        'results.pkl',
        '--rescale-factor',
        '4',
        '--topk',
        '1',
    ]
    ok(run([*analyze, '--out-dir', 'plain'], project))
    ok(run(['analyze_results_bgr.py', *analyze, '--out-dir', 'fixed'], project))
    drawn = f'success/{index}.png'
    # upstream alone draws A (red) blue; the FAQ's wrapper draws it red
    assert _red_minus_blue_at_a(project / 'plain' / drawn, box, 4) < -50
    assert _red_minus_blue_at_a(project / 'fixed' / drawn, box, 4) > 50
