"""The model zoo: every config in ``configs/`` by name, in MMPretrain's ``ModelHub``.

``model-index.yml`` lists one ``configs/<family>/metafile.yml`` per config
family, in MMPretrain's (and MIM's) format; each entry is named by its config
file's stem. Importing :mod:`chrnn_plugin` hooks the index into MMPretrain's
``ModelHub`` without reading it: it is registered the first time MMPretrain
looks a name up or lists its models (``get_model(name)``, ``list_models``, the
inferencers' ``list_models`` and constructors), right after MMPretrain's own
index. So::

    import chrnn_plugin  # noqa: F401
    from mmpretrain import get_model, list_models

    list_models('*hlstm*')  # ['hlstm_resnet50_8xb32_in1k', ..., 'hlstm_vgg16_8xb32_sun397']
    model = get_model('hsrn_resnet50_8xb32_mit67')

If the index cannot be registered (it is missing, a name is taken, or this
MMPretrain's ``ModelHub`` lacks what the hook uses), MMPretrain's own names
keep working: listing models warns once, and looking up a name that is not
found raises :class:`ModelIndexError` saying why.

No trained weights are published yet: no entry has ``Weights``, so
``get_model(name)`` builds the model with its initial weights (and
``pretrained=True`` warns that there are none). Load your own checkpoint with
``pretrained=PATH``, or strictly with :func:`chrnn_plugin.engine.strict_loading.get_model`.

Where the index is: a wheel carries it, with the configs, in
``chrnn_plugin/.mim/`` (where MIM looks; ``setup.py`` copies them there); a
checkout (and so an editable install) has it at the repository root.
"""

import difflib
import warnings
from pathlib import Path
from typing import Any

INDEX_NAME = 'model-index.yml'
PACKAGE_DIR = Path(__file__).resolve().parent
# Most specific first: a wheel's own copy, then the checkout the package sits in.
INDEX_CANDIDATES = (PACKAGE_DIR / '.mim' / INDEX_NAME, PACKAGE_DIR.parent / INDEX_NAME)

# Set on the functions that replace ModelHub's, so that they are installed once per hub.
_HOOK_MARK = '_chrnn_plugin_model_index'
# What the hook needs of ModelHub (MMPretrain 1.x).
_HUB_API = ('_register_mmpretrain_models', 'register_model_index', '_models_dict')
# The hubs the index is registered with, and its names: every lookup calls the hook.
_REGISTERED: dict[type, list[str]] = {}
# The hubs the index could not be registered with, and why: said when a lookup fails.
_FAILED: dict[type, str] = {}


class ModelIndexError(ValueError):
    """The model index cannot be found, read or registered with MMPretrain's ``ModelHub``.

    A ``ValueError``, as MMPretrain's own error for a name it does not know.
    """


def index_path() -> Path:
    """The ``model-index.yml`` this installation has.

    Returns:
        Path: The wheel's ``chrnn_plugin/.mim/model-index.yml``, else the checkout's.

    Raises:
        ModelIndexError: Neither exists.
    """
    for candidate in INDEX_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ModelIndexError(
        'chrnn_plugin has no model index: looked for '
        + ' and '.join(str(c) for c in INDEX_CANDIDATES)
        + ". Install from a checkout (`pip install -e '.[lite]'`) or a wheel built from one, "
        'or pass a config file instead of a model name.'
    )


def load_index(path: Path | None = None) -> Any:
    """Read the model index with ``modelindex`` (as MMPretrain does) and check it.

    Args:
        path: The ``model-index.yml``; default :func:`index_path`.

    Returns:
        modelindex.models.ModelIndex.ModelIndex: The index, models built with
        their collections' metadata.

    Raises:
        ModelIndexError: A metafile could not be read, or an entry has no
            config file or names one that does not exist.
    """
    from modelindex.load_model_index import load

    path = index_path() if path is None else Path(path)
    index = load(str(path))
    # modelindex records an unreadable metafile as a check error and goes on.
    problems = list(index.check_errors)
    for model in index.models:
        if not model.config:
            problems.append(f'{model.name}: no Config')
        elif not (path.parent / model.config).is_file():
            problems.append(f'{model.name}: its Config {model.config} does not exist')
    if problems:
        raise ModelIndexError(f'{path}: ' + '; '.join(problems))
    return index


def model_names() -> list[str]:
    """The names of the index, in its order (config file stems)."""
    return [model.name for model in load_index().models]


def config_path(name: str) -> Path:
    """The config file of the model called ``name`` (case-insensitive).

    Raises:
        ModelIndexError: No model has that name (the message suggests close ones).
    """
    path = index_path()
    configs = {model.name.lower(): model.config for model in load_index(path).models}
    if name.lower() not in configs:
        close = difflib.get_close_matches(name.lower(), configs, n=3)
        hint = f'; did you mean {", ".join(close)}?' if close else ''
        raise ModelIndexError(f'no model called {name!r} in {path}{hint}')
    return path.parent / configs[name.lower()]


def _model_hub() -> type:
    from mmpretrain.apis.model import ModelHub

    return ModelHub


def register_models(hub: type | None = None) -> list[str]:
    """Register every model of the index with ``hub`` now; a second call does nothing.

    The lazy hook calls this; call it yourself only to register eagerly.

    Args:
        hub: The ``ModelHub`` class; default MMPretrain's.

    Returns:
        list[str]: The registered names.

    Raises:
        ModelIndexError: The index cannot be read, this MMPretrain's
            ``ModelHub`` cannot take it, or a name is taken by another model.
    """
    hub = _model_hub() if hub is None else hub
    if hub in _REGISTERED:
        return _REGISTERED[hub]
    missing = [name for name in _HUB_API if not hasattr(hub, name)]
    if missing:
        raise ModelIndexError(_api_problem(hub, missing))
    path = index_path()
    names = [model.name.lower() for model in load_index(path).models]
    registered = hub._models_dict
    index_dir = path.parent.resolve()
    ours = [n for n in names if n in registered and _is_under(registered[n], index_dir)]
    # All of them there already: this module was reloaded, the hub was not.
    if len(ours) < len(names):
        taken = [f'{n} ({registered[n].filepath})' for n in names if n in registered]
        if taken:
            raise ModelIndexError(f'{path}: names already registered by another index: {taken}')
        # Config paths in the index are relative to the index file, not to each
        # metafile (ModelHub's default).
        hub.register_model_index(path, config_prefix=path.parent)
    _REGISTERED[hub] = names
    return names


def _is_under(metainfo: Any, directory: Path) -> bool:
    filepath = getattr(metainfo, 'filepath', None)
    return filepath is not None and Path(filepath).resolve().is_relative_to(directory)


def _api_problem(hub: type, missing: list[str]) -> str:
    return f"MMPretrain's {hub.__name__} has no {', '.join(missing)} (MMPretrain 1.2 has them)"


def install_lazy_registration(hub: type | None = None) -> None:
    """Make ``hub`` register the index right after it registers MMPretrain's own.

    Never raises, and never stops MMPretrain's own names from working: if the
    index cannot be registered (this ``ModelHub`` lacks what it takes, the
    index is missing, a name is taken), listing models warns once and a lookup
    of a name that is not found raises :class:`ModelIndexError` saying why.

    Args:
        hub: The ``ModelHub`` class; default MMPretrain's.
    """
    if hub is None:
        try:
            hub = _model_hub()
        except ImportError:  # no ModelHub: nothing looks names up
            return
    _explain_failed_lookups(hub)
    missing = [name for name in _HUB_API if not hasattr(hub, name)]
    if missing:
        _FAILED[hub] = _api_problem(hub, missing)
        return
    register_mmpretrain_models = hub._register_mmpretrain_models
    if getattr(register_mmpretrain_models, _HOOK_MARK, False):
        return

    def register_all(cls: type) -> None:
        register_mmpretrain_models()
        if cls in _REGISTERED or cls in _FAILED:
            return
        try:
            register_models(cls)
        except ModelIndexError as error:
            _FAILED[cls] = str(error)
            warnings.warn(f'chrnn_plugin registered none of its models: {error}', stacklevel=3)

    setattr(register_all, _HOOK_MARK, True)
    hub._register_mmpretrain_models = classmethod(register_all)


def _explain_failed_lookups(hub: type) -> None:
    """Make a failed ``hub.get`` say why our models are missing, when they are."""
    get = getattr(hub, 'get', None)
    if get is None or getattr(get, _HOOK_MARK, False):
        return
    # The function under the classmethod, so that a subclass looks in its own table.
    function = getattr(get, '__func__', None)

    def get_or_explain(cls: type, model_name: str) -> Any:
        try:
            return get(model_name) if function is None else function(cls, model_name)
        except ValueError as error:
            if cls not in _FAILED:
                raise
            raise ModelIndexError(
                f'{error} chrnn_plugin registered none of its models: {_FAILED[cls]}. '
                'Give a config file (configs/...) instead of a model name.'
            ) from error

    setattr(get_or_explain, _HOOK_MARK, True)
    hub.get = classmethod(get_or_explain)


install_lazy_registration()
