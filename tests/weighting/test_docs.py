"""docs/weighting.md stays true: every python block runs, every registered
built-in scheme is documented, and the option tables match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_bt import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "weighting.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_python_blocks_run():
    blocks = _blocks("python")
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "weighting_docs"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name}[python block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"python block {i} of {DOC.name} failed: {exc!r}\n{block}")


def test_toml_blocks_build_the_scheme():
    import tomllib

    for block in _blocks("toml"):
        section = tomllib.loads(block)["weighting"]
        tasks = ["direction@1", "return@1", "volatility@1", "volume@1"]
        scheme = registry.create("weighting", section["name"], tasks, **section.get("options", {}))
        assert scheme.weights()


def test_every_builtin_scheme_has_a_section():
    text = DOC.read_text()
    builtin = [
        e.name for e in registry.registry().entries()
        if e.kind == "weighting" and e.plugin == "builtin_weightings"
    ]  # fmt: skip
    assert builtin
    for name in builtin:
        assert f"### {name}\n" in text, name
        assert f"| `{name}` |" in text, name


@pytest.mark.parametrize("name", ["uncertainty", "gradnorm", "dwa", "mgda", "cagrad"])
def test_documented_options_exist(name):
    factory = registry.get("weighting", name)
    section = DOC.read_text().split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
    for key in re.findall(r"^\| `(\w+)`", section, flags=re.M):
        assert key in factory.SPEC, (name, key)
