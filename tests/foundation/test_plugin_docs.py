"""Every python block of docs/plugins.md runs, in order, in one namespace (the guide's
snippets register their plugins in-process and run their conformance checks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_bt import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


@pytest.fixture
def clean_registry():
    before = set(registry._extra)
    yield
    for name in set(registry._extra) - before:
        registry.unregister_plugin(name)


def test_every_python_block_runs(clean_registry):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "plugin_docs"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name}[python block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"python block {i} of {DOC.name} failed: {exc!r}\n{block}")
    for name in ("demo_source", "range_mean", "range", "two_tower", "sign_agreement"):
        assert any(name in registry.names(kind) for kind in registry.KINDS), name


def test_every_kind_section_gives_a_signature_and_a_check():
    text = DOC.read_text()
    for hook in registry.KINDS.values():
        section = text.split(f"### {hook}(register)\n", 1)[1].split("\n### ", 1)[0]
        assert "```python" in section, hook
        assert "check_" in section, hook


def test_kit_table_lists_every_check():
    import mtl_bt.testing as kit

    text = DOC.read_text()
    for name in kit.__all__:
        if name.startswith("check_"):
            assert f"`{name}(" in text, name
