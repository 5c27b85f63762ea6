from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


def read_version() -> str:
    namespace: dict = {}
    exec((HERE / 'chrnn_plugin' / 'version.py').read_text(), namespace)
    return namespace['__version__']


setup(
    name='chrnn_plugin',
    version=read_version(),
    description='Convolutional hierarchical recurrent networks (HSRN, HLSTM) as MMPretrain necks',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['chrnn_plugin', 'chrnn_plugin.*']),
    install_requires=read_requirements('runtime'),
    extras_require={
        'lite': read_requirements('lite'),
        'full': read_requirements('full'),
        'tests': read_requirements('tests'),
        'docs': read_requirements('docs'),
    },
)
