"""Every Python block of the user docs runs as written (issue #28: blocks used `frames`,
`cerebro`, `config`, `d` that nothing defined, and `spec.warmup()  # 42` returned 39).

A block runs alone, in a fresh namespace, unless its first line is
``# continues the block above``: then it runs after the previous block of the same page, in
that block's namespace (as a reader who pasted both would). Blocks run in a folder holding
what the prose asks for: ``my.toml`` (a small config of the bundled sample) and ``runs/x``
(``mtl-bt train my.toml --out runs/x``). A block under ``if __name__ == "__main__":`` runs
as an imported module (its imports and definitions: its body trains for minutes).

Pages whose blocks another test runs with more checks are listed in ``ELSEWHERE``; every
page with a Python block is in one of the two lists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTINUES = "# continues the block above"
#: pages run here
PAGES = [
    "docs/backtesting.md", "docs/data.md", "docs/features.md", "docs/tasks.md",
    "docs/training.md", "docs/run.md",
]  # fmt: skip
#: pages whose blocks another test runs (the test file names the page)
ELSEWHERE = {
    "README.md": "tests/e2e/test_cli_e2e.py",
    "docs/quickstart_snippet.md": "tests/e2e/test_cli_e2e.py",
    "docs/architectures.md": "tests/models/test_plugin_api.py",
    "docs/plugins.md": "tests/foundation/test_plugin_docs.py",
    "docs/weighting.md": "tests/weighting/test_docs.py",
    "docs/paper.md": "tests/paper/test_docs.py",
}
MY_TOML = """
[data]
source = "sample"
symbols = ["BTC/USDT", "ETH/USDT"]
timeframe = "1h"
since = "2024-01-01"
until = "2024-02-10"

[features]
names = ["log_return", "volatility", "rsi"]

[[tasks]]
name = "return"
horizons = [1]

[[tasks]]
name = "direction"
horizons = [1]

[model]
hidden = [4]

[training]
epochs = 1
batch_size = 256

[walk_forward]
train_bars = 400
test_bars = 200
max_folds = 2

[report]
plots = false
"""


def _blocks(page: str) -> list[tuple[int, str]]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [
        (text[: m.start()].count("\n") + 2, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)
    ]


def _cases() -> list:
    cases = []
    for page in PAGES:
        blocks = _blocks(page)
        for i, (line, code) in enumerate(blocks):
            chain = [(line, code)]
            j = i
            while chain[0][1].startswith(CONTINUES):
                assert j > 0, f"{page}:{line} continues a block, but none is above it"
                j -= 1
                chain.insert(0, blocks[j])
            cases.append(pytest.param(page, chain, id=f"{page}:{line}"))
    return cases


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """``my.toml`` and ``runs/x``, trained from it, as the docs' prose asks."""
    from mtl_bt import config
    from mtl_bt.data import load_frames
    from mtl_bt.training import train_walk_forward

    folder = tmp_path_factory.mktemp("docs")
    (folder / "my.toml").write_text(MY_TOML)
    cfg = config.load(folder / "my.toml")
    train_walk_forward(cfg, load_frames(cfg.data), out_dir=folder / "runs" / "x")
    return folder


def test_every_page_with_python_blocks_is_run_by_a_test():
    pages = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "docs").glob("*.md"))]
    with_code = {p for p in [*pages, "README.md"] if _blocks(p)}
    assert with_code == set(PAGES) | set(ELSEWHERE)
    for page, test in ELSEWHERE.items():
        assert Path(page).name in (ROOT / test).read_text(encoding="utf-8"), (page, test)


@pytest.mark.parametrize(("page", "chain"), _cases())
def test_block_runs_as_written(page, chain, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "doc_snippet"}
    for line, code in chain:
        exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102 - our own docs
    for expression, value in _stated_values(chain[-1][1]):
        assert eval(expression, namespace) == value, (page, expression)  # noqa: S307


def _stated_values(code: str) -> list[tuple[str, object]]:
    """``expr  # 30: ...`` or ``expr  # ['a', 'b']``: the value a comment says an expression
    has (the docs said ``spec.warmup()  # 42`` where it was 39)."""
    out = []
    for line in code.splitlines():
        left, sep, comment = line.partition("  # ")
        if not sep or "=" in left.replace("==", "") or left.startswith((" ", "#")):
            continue
        head = comment.split(":", 1)[0].strip() if comment[:1].isdigit() else comment.strip()
        try:
            ast.parse(left, mode="eval")
            value = ast.literal_eval(head)
        except (SyntaxError, ValueError):
            continue
        if isinstance(value, int | float | list | str):
            out.append((left.strip(), value))
    return out
