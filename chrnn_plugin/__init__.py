"""C-HRNN necks (HSRN, HLSTM) for MMPretrain.

Importing this package registers its modules in MMPretrain's registries, so a
config only needs::

    custom_imports = dict(imports=['chrnn_plugin'], allow_failed_imports=False)
"""

from ._dependencies import check_dependencies

check_dependencies()

from . import datasets, engine, evaluation, model_zoo, models  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ['__version__']
