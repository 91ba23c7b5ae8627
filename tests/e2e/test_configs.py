"""Shipped configs are valid and docs/config.md matches the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_bt import config as config_mod
from mtl_bt.cli.run_cmd import SHIPPED, shipped_config
from mtl_bt.config_docs import generate, main
from mtl_bt.errors import ConfigError

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


# every shipped config, plus multi_horizon trading its smallest horizon (no signal horizon):
# there the single-task model (return@1) is shorter than the MTL purge (24), the case the
# purge override exists for
CONFIGS = [shipped_config(n) for n in SHIPPED] + EXAMPLES + ["multi_horizon_no_signal_horizon"]


def _load(path: Path | str) -> config_mod.Config:
    if path == "multi_horizon_no_signal_horizon":
        cfg = config_mod.load(ROOT / "examples" / "configs" / "multi_horizon.toml")
        bt = cfg.backtest.model_copy(update={"signal_options": {}})
        return cfg.model_copy(update={"backtest": bt})
    return config_mod.load(path)


def _frames(cfg: config_mod.Config) -> dict:
    """The config's bars, offline: a ccxt data section is replaced by the bundled sample of the
    same symbols and range; a relative CSV path is taken from the repository root."""
    from mtl_bt.data import load_frames

    data = cfg.data
    if data.source == "ccxt":
        data = config_mod.DataConfig(
            source="sample",
            symbols=data.symbols,
            timeframe=data.timeframe,
            since=data.since,
            until=data.until,
        )
    elif data.source == "csv" and not Path(data.options["path"]).is_absolute():
        options = {**data.options, "path": str(ROOT / data.options["path"])}
        data = data.model_copy(update={"options": options})
    return load_frames(data, no_cache=True)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).name)
def test_compare_variants_have_the_signal_heads(path: Path | str) -> None:
    """Every compare variant's tasks include the heads its signal rule trades."""
    from mtl_bt import registry
    from mtl_bt.compare.variants import SINGLE_TASK, build_variants
    from mtl_bt.signals.base import pick_horizon

    base = _load(path)
    bt = base.backtest
    traded = registry.create("signal", bt.signal, **bt.signal_options).heads(base.task_names())
    for variant in build_variants(base):
        cfg = variant.config(base, base.training.seed)
        names = cfg.task_names()
        if not variant.traded_alone:  # a member of the ensemble: one non-traded task
            assert len(names) == 1 and names[0] in base.task_names()
            continue
        rule = registry.create("signal", cfg.backtest.signal, **cfg.backtest.signal_options)
        heads = rule.heads(names)  # PluginError if the variant lacks the traded return head
        assert heads["return"] in names, (variant.name, heads, names)
        assert all(h is None or h in names for h in heads.values()), (variant.name, heads)
        options = cfg.backtest.signal_options
        h = pick_horizon({n: None for n in names}, options.get("horizon"), cfg.backtest.signal)
        assert heads["return"] == f"return@{h}"
        # the baseline trades the same horizon as the MTL model it is compared with
        assert heads["return"] == traded["return"]
        if variant.kind == SINGLE_TASK:
            assert names == [traded["return"]]
        else:  # MTL, the ensemble and no_aux trade every configured task's heads
            assert names == base.task_names()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).name)
def test_compare_variants_share_the_walk_forward_folds(path: Path | str) -> None:
    """Single-task and MTL variants get identical folds (train/val/test bounds and purge),
    computed without training, the way a compare job computes them."""
    from mtl_bt.compare.variants import SINGLE_TASK, build_variants
    from mtl_bt.training.dataset import build_dataset
    from mtl_bt.training.pipeline import (
        build_components,
        fold_metadata,
        splits_for,
    )

    base = _load(path)
    frames = _frames(base)
    variants = build_variants(base)
    folds: dict[str, list[dict]] = {}
    unpurged: dict[str, list[dict]] = {}  # the folds without the compare purge override
    for variant in variants:
        cfg = variant.config(base, base.training.seed)
        comp = build_components(cfg)
        ds = build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
        folds[variant.name] = [fold_metadata(ds, s) for s in splits_for(cfg, ds)]
        own = cfg.walk_forward.model_copy(update={"purge_bars": None})
        own_cfg = cfg.model_copy(update={"walk_forward": own})
        unpurged[variant.name] = [fold_metadata(ds, s) for s in splits_for(own_cfg, ds)]
        if ds.horizon > 1:  # a purge shorter than the model's own horizon would leak
            with pytest.raises(ConfigError, match="shorter than the largest task horizon"):
                short = cfg.walk_forward.model_copy(update={"purge_bars": ds.horizon - 1})
                splits_for(cfg.model_copy(update={"walk_forward": short}), ds)
        assert {f["purge"] for f in folds[variant.name]} == {base.max_horizon()}
    mtl = [v.name for v in variants if v.kind != SINGLE_TASK]
    single = [v.name for v in variants if v.kind == SINGLE_TASK]
    assert mtl and single and folds[mtl[0]]
    for name in [*mtl, *single]:
        assert folds[name] == folds[mtl[0]], name  # timestamps and axis positions
    if path == "multi_horizon_no_signal_horizon":
        # without the override the return@1 baseline would be purged by 1 bar: other folds
        assert unpurged[single[0]] != unpurged[mtl[0]]


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
