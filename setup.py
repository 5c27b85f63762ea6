import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# The model index and the configs it names, shipped in chrnn_plugin/.mim/ of a wheel: where
# MIM (`mim search chrnn_plugin`) and chrnn_plugin.model_zoo look in an installed package.
MODEL_ZOO_FILES = ('model-index.yml', 'configs')


def read_requirements(name: str) -> list[str]:
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


def read_version() -> str:
    namespace: dict = {}
    exec((HERE / 'chrnn_plugin' / 'version.py').read_text(), namespace)
    return namespace['__version__']


class BuildPyWithModelZoo(build_py):
    """``build_py`` that also copies the model index and the configs into ``chrnn_plugin/.mim``.

    Not for an editable install: that package is the checkout, which has them at its root.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = Path(self.build_lib) / 'chrnn_plugin' / '.mim'
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in MODEL_ZOO_FILES:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=shutil.ignore_patterns('__pycache__'))
            else:
                shutil.copy2(source, target / name)


setup(
    name='chrnn_plugin',
    version=read_version(),
    description='Convolutional hierarchical recurrent networks (HSRN, HLSTM) as MMPretrain necks',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['chrnn_plugin', 'chrnn_plugin.*']),
    # The CPU kernels' source, compiled on first use (chrnn_plugin/models/necks/cpu_kernels.py).
    package_data={'chrnn_plugin.models.necks': ['csrc/*.cpp']},
    cmdclass={'build_py': BuildPyWithModelZoo},
    install_requires=read_requirements('runtime'),
    extras_require={
        'lite': read_requirements('lite'),
        'full': read_requirements('full'),
        'tests': read_requirements('tests'),
        'docs': read_requirements('docs'),
    },
)
