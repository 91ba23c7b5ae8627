"""Docs stay in step with the code: every hook spec is documented."""

import inspect
from pathlib import Path

from mtl_bt import hookspecs
from mtl_bt.registry import KINDS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _hook_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("register_")
    ]


def test_every_hook_is_documented_with_its_arguments():
    text = (DOCS / "plugins.md").read_text()
    hooks = _hook_names()
    assert hooks, "no hook specs found"
    for name in hooks:
        args = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### {name}({args})" in text, f"docs/plugins.md lacks a section for {name}"


def test_every_kind_has_a_hook():
    assert sorted(KINDS.values()) == sorted(_hook_names())


def test_builtin_entry_points_are_documented():
    text = (DOCS / "plugins.md").read_text()
    for hook in KINDS.values():
        assert f"builtin_{hook.removeprefix('register_')}" in text


def test_plugin_guide_shows_the_whole_example_plugin():
    """The guide's listing is the tested example file, not an abridged copy."""
    guide = (DOCS / "plugins.md").read_text()
    example = (DOCS.parent / "examples" / "plugin_example" / "mtl_bt_example.py").read_text()
    assert f"```python\n{example}```" in guide
