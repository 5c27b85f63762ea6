"""docs/scripts/reach_profile.py: the reach table of the concepts page, and its --check."""

import pytest

from .conftest import load_docs_script


@pytest.fixture(scope='module')
def script():
    return load_docs_script('reach_profile')


def test_table_has_a_row_per_neck_and_distance(script, capsys):
    assert script.main(['--sizes', '12', '--distances', '3', '6']) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if '| 12x12 |' in line]
    assert len(rows) == 2 * len(script.NECKS)
    assert all(len(row.split('|')) == 8 for row in rows)


def test_check_passes_on_the_targets_from_the_figures(script, capsys):
    assert script.main(['--sizes', '28', '--distances', '21', '--check']) == 0
    assert 'PASS: HSRN and HLSTM meet the 2 reach targets' in capsys.readouterr().out


def test_check_fails_when_a_figure_misses(script, capsys, monkeypatch):
    monkeypatch.setitem(script.TARGETS, (28, 21), 2.0)  # more than any reach can be
    assert script.main(['--sizes', '28', '--distances', '21', '--check']) == 1
    assert 'FAIL HSRN 28x28 d=21' in capsys.readouterr().out


def test_check_without_a_target_size_fails(script, capsys):
    assert script.main(['--sizes', '12', '--distances', '3', '--check']) == 1
    assert 'measured no target' in capsys.readouterr().out
