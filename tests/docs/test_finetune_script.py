"""docs/scripts/finetune_residual.py, end to end on a tiny run: residual necks start as GAP.

The pre-trained head is loaded through MMEngine's ``load_from`` into every
fine-tuning run, so step 0 of a ``residual=True`` neck must give exactly the
accuracy of the GAP model: the identity holds through the runner, not only in
a unit test.
"""

import json

import pytest

from .conftest import load_docs_script


@pytest.mark.slow
def test_residual_necks_start_with_gaps_accuracy(tmp_path):
    script = load_docs_script('finetune_residual')
    args = ['--work-dir', str(tmp_path), '--train-size', '96', '--val-size', '64', '--epochs', '2']
    assert script.main(args + ['--runs', 'gap', 'hsrn_residual', 'hlstm_residual']) == 0
    results = json.loads((tmp_path / 'finetune.json').read_text())
    assert len(results['pretrain']['val_top1']) == 2
    runs = ('gap', 'hsrn_residual', 'hlstm_residual')
    step_zero = {run: results[run]['val_top1'][0] for run in runs}
    assert len(set(step_zero.values())) == 1, step_zero
    # Step 0 plus one validation per epoch.
    assert all(len(results[run]['val_top1']) == 3 for run in step_zero)
