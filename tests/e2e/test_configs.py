"""Shipped configs are valid and docs/config.md matches the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_bt import config as config_mod
from mtl_bt.cli.run_cmd import SHIPPED, shipped_config
from mtl_bt.config_docs import generate, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.toml"))


def test_docs_config_md_matches_schema() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == generate(), (
        "docs/config.md is stale: python -m mtl_bt.config_docs > docs/config.md"
    )
    # every key of every section is documented
    for section, info in config_mod.Config.model_fields.items():
        model = info.annotation
        fields = getattr(model, "model_fields", None) or config_mod.TaskConfig.model_fields
        for key in fields:
            assert f"| `{key}` |" in text, f"{section}.{key} missing from docs/config.md"
    assert main(["--check", str(ROOT / "docs" / "config.md")]) == 0


def test_docs_checker_detects_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "config.md"
    stale.write_text(generate().replace("maximum epochs per fold", "epochs"))
    assert main(["--check", str(stale)]) == 1


@pytest.mark.parametrize(
    "path",
    [shipped_config(n) for n in SHIPPED] + EXAMPLES,
    ids=lambda p: Path(p).name,
)
def test_shipped_and_example_configs_build(path: Path) -> None:
    from mtl_bt.compare.variants import build_variants
    from mtl_bt.training.pipeline import build_components, build_fold_model

    cfg = config_mod.load(path)
    build_variants(cfg)  # plugin names exist
    comp = build_components(cfg)  # tasks, features, weighting options
    model = build_fold_model(cfg, 14, comp.tasks, len(cfg.data.symbols))  # architecture options
    shape = (3, 14) if comp.lookback == 1 else (3, comp.lookback, 14)
    out = model(torch.zeros(shape), torch.zeros(3, dtype=torch.long))
    assert set(out) == set(cfg.task_names())


def test_examples_cover_the_documented_cases() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {
        "crypto_portfolio",
        "stocks_portfolio",
        "multi_horizon",
        "single_asset_csv",
        "ccxt_bybit",
    } <= names


def test_csv_example_loads_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtl_bt.data import load_frames

    monkeypatch.chdir(ROOT)
    cfg = config_mod.load(ROOT / "examples" / "configs" / "single_asset_csv.toml")
    frames = load_frames(cfg.data, no_cache=True)
    assert list(frames) == ["AAPL"] and len(frames["AAPL"]) == 3270
