"""Checks that the OpenMMLab stack is installed, in the range we support.

MMPretrain imports mmcv and mmengine but declares neither, so a missing or
mismatched package would otherwise surface as an obscure error deep inside an
import. We check first and say in one message what to install.
"""

from importlib import metadata

from packaging.version import Version

# (import name, distributions that provide it, minimum, exclusive maximum)
SUPPORTED = (
    ('mmcv', ('mmcv', 'mmcv-lite'), '2.0.0', '2.4.0'),
    ('mmengine', ('mmengine',), '0.10.7', '1.0.0'),
    ('mmpretrain', ('mmpretrain',), '1.2.0', '1.3.0'),
)

INSTALL_HINT = (
    "Install the CPU stack with `pip install -e '.[lite]'` (mmcv-lite), or, "
    "on a GPU machine that already has full mmcv, `pip install -e '.[full]'`."
)


def _installed_version(distributions: tuple) -> str | None:
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def find_dependency_problems() -> list[str]:
    """Return one line per missing or out-of-range OpenMMLab package."""
    problems = []
    for name, dists, minimum, maximum in SUPPORTED:
        version = _installed_version(dists)
        wanted = f'{name}>={minimum},<{maximum}'
        if version is None:
            problems.append(f'{wanted} is required but not installed')
        elif not Version(minimum) <= Version(version) < Version(maximum):
            problems.append(f'{wanted} is required but {name}=={version} is installed')
    return problems


def check_dependencies() -> None:
    """Raise one ImportError naming every missing or unsupported package."""
    problems = find_dependency_problems()
    if problems:
        raise ImportError(
            'chrnn_plugin cannot be imported: ' + '; '.join(problems) + '. ' + INSTALL_HINT
        )
