"""The API page documents the whole public surface of the package.

Public: every module whose dotted name has no part starting with ``_``; in it,
the classes and functions its ``__all__`` names (or, without ``__all__``, every
class and function defined there whose name has no leading ``_``); and every
name a package exports in its ``__all__``, wherever it is documented.
"""

import importlib
import inspect
import pkgutil
import re

import pytest

import chrnn_plugin


def _public_modules() -> list[str]:
    names = ['chrnn_plugin']
    for info in pkgutil.walk_packages(chrnn_plugin.__path__, 'chrnn_plugin.'):
        if not any(part.startswith('_') for part in info.name.split('.')):
            names.append(info.name)
    return names


PUBLIC_MODULES = _public_modules()


def _public_objects(module_name: str) -> list[str]:
    """Classes and functions defined in the module that it makes public."""
    module = importlib.import_module(module_name)
    exported = getattr(module, '__all__', None)
    names = exported if exported is not None else [n for n in vars(module) if n[0] != '_']
    found = []
    for name in names:
        obj = getattr(module, name)
        # Re-exports are checked where they are defined (and, for a package, by name).
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module_name:
            found.append(f'{module_name}.{name}')
    return found


@pytest.fixture(scope='module')
def api_ids(built_site) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', built_site.page('api')))


def test_public_modules_were_found():
    assert {'chrnn_plugin.datasets.spatial_relations', 'chrnn_plugin.deployment'} <= set(
        PUBLIC_MODULES
    )


@pytest.mark.parametrize('module', PUBLIC_MODULES)
def test_every_public_module_is_on_the_api_page(api_ids, module):
    assert f'module-{module}' in api_ids, (
        f'{module} is missing from the API page: add `.. automodule:: {module}` to docs/api.md'
    )
    missing = [name for name in _public_objects(module) if name not in api_ids]
    assert not missing, f'docs/api.md does not document {missing} (add them to :members:)'


@pytest.mark.parametrize(
    'package', [m for m in PUBLIC_MODULES if hasattr(importlib.import_module(m), '__path__')]
)
def test_every_exported_name_is_on_the_api_page(api_ids, package):
    documented = {anchor.rsplit('.', 1)[-1] for anchor in api_ids if anchor.startswith('chrnn_')}
    exported = importlib.import_module(package).__all__
    missing = [name for name in exported if name not in documented]
    assert not missing, f'{package}.__all__ names {missing}, which docs/api.md does not document'


def _constructor_parameters(page: str, anchor: str) -> list[tuple[str, str]]:
    """``(name, rest of its line)`` for each entry of the object's Parameters list."""
    start = page.index(f'id="{anchor}"')
    section = page[start : page.find('<dt class="sig sig-object py"', start + 1)]
    fields = re.search(
        r'Parameters<span class="colon">:</span></dt>\s*<dd[^>]*>(.*?)</dd>', section, re.S
    )
    assert fields, f'{anchor} has no Parameters list on the API page'
    return re.findall(r'<strong>([^<]+)</strong>(.*?)</p>', fields.group(1), re.S)


@pytest.mark.parametrize(
    'anchor',
    [
        'chrnn_plugin.models.necks.hrnn_neck.HSRNNeck',
        'chrnn_plugin.models.necks.hrnn_neck.HLSTMNeck',
        'chrnn_plugin.models.necks.hrnn_neck.HRNNNeck',
        'chrnn_plugin.models.necks.region_attention.RegionSelfAttentionNeck',
        'chrnn_plugin.models.necks.renet.ReNetNeck',
    ],
)
def test_every_neck_argument_has_a_description(built_site, anchor):
    parameters = _constructor_parameters(built_site.page('api'), anchor)
    # autodoc lists a parameter with its type only when the docstring does not describe it
    bare = [name for name, rest in parameters if ' – ' not in rest]
    assert parameters and not bare, f'{anchor}: no description for {bare}'


def test_formulas_in_docstrings_are_math_not_code(built_site):
    api = built_site.page('api')
    # TeX written as inline code shows its braces and carets, e.g. h_p^{d_1}
    assert not re.search(r'<span class="pre">[^<]*[_^]\{', api), 'TeX shown as code on the API page'
