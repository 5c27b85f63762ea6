"""docs/scripts/demo_ablations.py: each variant changes what it says, and the table is honest."""

import json

import pytest
import torch

from .conftest import load_docs_script


@pytest.fixture(scope='module')
def script():
    return load_docs_script('demo_ablations')


def test_every_default_variant_parses_and_unknown_ones_are_named(script):
    assert all(script.parse_variant(v) for v in script.DEFAULT_VARIANTS)
    with pytest.raises(Exception, match="unknown variant 'gap:even_mix'"):
        script.parse_variant('gap:even_mix')


def test_first_pass_reports_the_epoch_and_its_steps(script):
    assert script.first_pass([50.0, 89.9, 90.0, 99.0], 94) == 'epoch 3 (282 steps)'
    assert script.first_pass([25.0, 26.0], 94) == 'not reached'


def test_init_patches_change_the_initialisation_and_only_for_the_run(script):
    from chrnn_plugin.models import HLSTMNeck, HSRNNeck

    with script.INIT_PATCHES['hsrn', 'even_mix']():
        cell = HSRNNeck(in_channels=4, hidden_channels=3).levels[0].cell
    assert torch.equal(cell.weight_h, 0.5 * torch.eye(3).expand(4, 3, 3))
    assert not torch.equal(HSRNNeck(4, 3).levels[0].cell.weight_h, cell.weight_h)
    with script.INIT_PATCHES['hlstm', 'before']():
        bias = HLSTMNeck(in_channels=4, hidden_channels=3).levels[0].input_proj.bias
    assert torch.equal(bias.view(4, 5, 3)[:, 1], torch.ones(4, 3))
    assert torch.equal(bias.view(4, 5, 3)[:, [0, 2, 3, 4]], torch.zeros(4, 4, 3))


def test_recipe_changes_edit_the_config(script):
    from mmengine.config import Config

    cfg = Config.fromfile(str(script.REPO_ROOT / 'configs' / 'demo' / 'hsrn.py'))
    script.RECIPE_CHANGES['no_warmup'](cfg)
    assert [s['type'] for s in cfg.param_scheduler] == ['CosineAnnealingLR']
    assert cfg.param_scheduler[0]['begin'] == 0
    script.RECIPE_CHANGES['no_weight_decay'](cfg)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.0


@pytest.mark.slow
def test_a_tiny_run_writes_its_rows(script, tmp_path, capsys):
    args = ['--work-dir', str(tmp_path), '--image-size', '56', '--train-size', '64']
    args += ['--val-size', '32', '--epochs', '1', '--variants', 'hsrn:even_mix', 'hsrn:lr_1e-3']
    assert script.main(args) == 0
    results = json.loads((tmp_path / 'ablations.json').read_text())
    assert list(results) == ['hsrn:even_mix', 'hsrn:lr_1e-3']
    assert all(len(r['val_top1']) == 1 for r in results.values())
    out = capsys.readouterr().out
    assert '| HSRN | even_mix |' in out and '| HSRN | lr_1e-3 |' in out
