"""Map the repo's top-level plugins/ and strategies/ under the mtl_bt namespace.

The wheel must never install a bare `plugins` or `strategies` module, so both
folders ship as `mtl_bt.plugins` and `mtl_bt.strategies`. Everything else is in
pyproject.toml.
"""

from setuptools import find_packages, setup


def _mapped(folder: str) -> list[str]:
    return [f"mtl_bt.{name}" for name in find_packages(include=[folder, f"{folder}.*"])]


setup(
    packages=find_packages(include=["mtl_bt", "mtl_bt.*"])
    + _mapped("plugins")
    + _mapped("strategies"),
    package_dir={
        "mtl_bt": "mtl_bt",
        "mtl_bt.plugins": "plugins",
        "mtl_bt.strategies": "strategies",
    },
)
