"""A missing or unsupported OpenMMLab package gives one clear ImportError."""

from importlib import metadata

import pytest

from chrnn_plugin import _dependencies


def _fake_versions(monkeypatch, versions: dict):
    def version(dist):
        if dist not in versions:
            raise metadata.PackageNotFoundError(dist)
        return versions[dist]

    monkeypatch.setattr(_dependencies.metadata, 'version', version)


def test_supported_stack_passes(monkeypatch):
    _fake_versions(monkeypatch, {'mmcv-lite': '2.2.0', 'mmengine': '0.10.7', 'mmpretrain': '1.2.0'})
    _dependencies.check_dependencies()


def test_full_mmcv_counts_as_mmcv(monkeypatch):
    _fake_versions(monkeypatch, {'mmcv': '2.1.0', 'mmengine': '0.10.7', 'mmpretrain': '1.2.0'})
    assert _dependencies.find_dependency_problems() == []


def test_missing_and_out_of_range_packages_are_all_named(monkeypatch):
    _fake_versions(monkeypatch, {'mmengine': '1.1.0', 'mmpretrain': '1.2.0'})
    with pytest.raises(ImportError) as error:
        _dependencies.check_dependencies()
    message = str(error.value)
    assert 'mmcv>=2.0.0,<2.4.0 is required but not installed' in message
    assert 'mmengine>=0.10.7,<1.0.0 is required but mmengine==1.1.0 is installed' in message
    assert "pip install -e '.[lite]'" in message
