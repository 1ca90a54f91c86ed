"""Package list for the `hilt` import root; all other metadata is in pyproject.toml.

pyproject.toml maps each root of the `hilt` namespace onto a folder
([tool.setuptools.package-dir]: hilt.pipelines = pipelines/, hilt.widgets = widgets/).
pyproject.toml cannot say "find the packages below a folder and prefix their names",
so this file does it: every folder with an __init__.py below a mapped folder becomes a
subpackage (pipelines/store/ -> hilt.pipelines.store), with no list to maintain.
"""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]

packages = []
for root, folder in PACKAGE_DIR.items():
    if (HERE / folder).is_dir():
        packages.append(root)
        packages += [f"{root}.{sub}" for sub in find_packages(str(HERE / folder))]

setup(packages=packages)
