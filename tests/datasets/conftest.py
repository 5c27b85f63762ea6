"""Fixtures: fake official layouts written into tmp_path."""

import pytest

from .fake_layouts import make_mit67, make_places205, make_sun397


@pytest.fixture
def mit67_root(tmp_path):
    return make_mit67(tmp_path / 'mit67')


@pytest.fixture
def sun397_root(tmp_path):
    return make_sun397(tmp_path / 'sun397')


@pytest.fixture
def places205_root(tmp_path):
    return make_places205(tmp_path / 'places205')
