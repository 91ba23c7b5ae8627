"""The run configuration (TOML), validated on load.

Every section forbids unknown keys, so a typo is an error naming the key and
its section. Plugin-specific options (``options`` tables) are passed to the
plugin, which validates them itself.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mtl_bt.errors import ConfigError


class _Section(BaseModel):
    # inf/nan are refused for every float: "cash = inf" would pass a "> 0" check and crash later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _rule(text: str) -> PydanticCustomError:
    """An error about several keys of one section (the message names the keys)."""
    return PydanticCustomError("config_rule", "{rule}", {"rule": text})


_TIME_HINT = (
    "use ISO format (UTC unless an offset is given), e.g. 2024-01-01 or 2024-01-01T12:00:00Z"
)


class DataConfig(_Section):
    """Where bars come from."""

    source: str = Field("sample", description="source plugin: sample, csv, yfinance, ccxt")
    symbols: list[str] = Field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"],
        min_length=1,
        description="symbols to load; one model serves them all",
    )
    timeframe: str | None = Field(
        "1h", description='bar size, e.g. 15m, 1h, 4h, 1d, 1w ("" or None: source default)'
    )
    since: str | None = Field(None, description="first bar (ISO date/time, UTC)")
    until: str | None = Field(
        None, description="end of the data (ISO date/time, UTC), exclusive; after since"
    )
    cache: bool = Field(True, description="use the on-disk Parquet cache")
    options: dict[str, Any] = Field(
        default_factory=dict, description="source options: path, tz, exchange, api_url, market"
    )

    @field_validator("symbols")
    @classmethod
    def _named(cls, value: list[str]) -> list[str]:
        for i, symbol in enumerate(value):
            if not symbol.strip():
                raise ValueError(
                    f"entry {i} is {symbol!r}; every symbol must be a non-blank name, e.g. BTC/USDT"
                )
        return value

    @field_validator("timeframe")
    @classmethod
    def _bar_size(cls, value: str | None) -> str | None:
        from mtl_bt.data.timeframe import parse_timeframe

        if value is not None and value.strip():
            try:
                parse_timeframe(value)
            except ConfigError:
                raise ValueError(
                    f"{value!r} is not a bar size; use a number and a unit (s, m or min, h, d, w), "
                    'e.g. 1m, 15m, 1h, 4h, 1d, 1w (months are not supported; "": source default)'
                ) from None
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        from mtl_bt.data.timeframe import parse_time

        if isinstance(value, date):  # a TOML date/datetime literal: kept as an ISO string
            value = value.isoformat()
        if isinstance(value, str):
            try:
                parse_time(value)
            except ConfigError:
                raise ValueError(f"{value!r} is not a date/time; {_TIME_HINT}") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DataConfig:
        from mtl_bt.data.timeframe import parse_time

        since, until = parse_time(self.since), parse_time(self.until)
        if since is not None and until is not None and until <= since:
            raise _rule(
                f"data.until ({self.until!r}) must be later than data.since ({self.since!r}); "
                "since is the first bar, until is exclusive"
            )
        return self


class FeaturesConfig(_Section):
    """Causal features computed from OHLCV."""

    names: list[str] | None = Field(
        None, description="feature plugins to use (None: all built-ins)"
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-feature parameters, e.g. {sma = {window = 20}}"
    )
    scaler: Literal["standard", "robust"] = Field(
        "standard", description="scaler fitted on each fold's training slice only"
    )


class TaskConfig(_Section):
    """One task plugin, instantiated at one or more horizons."""

    name: str = Field(description="task plugin: return, direction, volatility, volume")
    horizons: list[int] = Field(
        default_factory=lambda: [1], min_length=1, description="bars ahead; one task instance each"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="task options, e.g. loss")

    @field_validator("horizons")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(h < 1 for h in value) or len(set(value)) != len(value):
            raise ValueError("horizons must be distinct integers >= 1")
        return value


class SequenceConfig(_Section):
    encoder: Literal["none", "gru", "conv"] = Field("none", description="shared input stage")
    lookback: int = Field(
        16, ge=2, le=512, description="feature rows per sample; set only with encoder gru/conv"
    )
    hidden: int = Field(
        32, ge=1, le=4096, description="width of the GRU/conv encoder; set only with an encoder"
    )

    @model_validator(mode="after")
    def _used(self) -> SequenceConfig:
        unused = sorted({"lookback", "hidden"} & self.model_fields_set)
        if self.encoder == "none" and unused:
            keys = " and ".join(f"model.sequence.{k}" for k in unused)
            raise _rule(
                f"{keys} {'is' if len(unused) == 1 else 'are'} only used with a sequence encoder, "
                'but model.sequence.encoder is "none"; set encoder = "gru" or "conv", '
                "or remove the key"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # without an encoder lookback/hidden are unused; leaving them out keeps a written
        # config.toml loadable (the check above refuses them when given explicitly)
        data = handler(self)
        if self.encoder == "none":
            data.pop("lookback", None)
            data.pop("hidden", None)
        return data


class ModelConfig(_Section):
    architecture: str = Field("shared_bottom", description="architecture plugin")
    hidden: list[int] = Field(
        default_factory=lambda: [64, 32], min_length=1, description="layer widths"
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout probability")
    asset_embedding: int = Field(0, ge=0, le=256, description="asset embedding size (0: off)")
    sequence: SequenceConfig = Field(
        default_factory=SequenceConfig, description="optional lookback-window input stage"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="architecture options")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        if any(h < 1 for h in value):
            raise ValueError("hidden widths must be >= 1")
        return value


class WeightingConfig(_Section):
    name: str = Field("equal", description="weighting plugin")
    options: dict[str, Any] = Field(default_factory=dict, description="scheme options")


class TrainingConfig(_Section):
    epochs: int = Field(20, ge=1, le=10_000, description="maximum epochs per fold")
    batch_size: int = Field(256, ge=1, le=1_000_000, description="rows per mini-batch")
    lr: float = Field(1e-3, gt=0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, le=1.0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm (all trainable parameters)")
    patience: int = Field(5, ge=1, description="early-stopping patience in epochs")
    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="end of train window used to validate"
    )
    seed: int = Field(0, ge=0, description="seed of fold 0 (fold k uses seed + k)")
    threads: int = Field(
        1,
        ge=1,
        description="torch threads of a training run or job (1, the default, is the fastest "
        "for mtl-bt's small models; train, run and compare all use it)",
    )


class WalkForwardConfig(_Section):
    scheme: Literal["expanding", "rolling"] = Field(
        "expanding", description="expanding: train from the start; rolling: last train_bars"
    )
    train_bars: int = Field(
        2000, ge=10, description="first (expanding) or every (rolling) train window"
    )
    test_bars: int = Field(500, ge=1, description="out-of-sample bars per fold")
    step_bars: int | None = Field(None, ge=1, description="fold step (None: test_bars)")
    embargo_bars: int = Field(0, ge=0, description="extra gap after the purge")
    purge_bars: int | None = Field(
        None,
        ge=1,
        description="bars between train and test (None: the largest task horizon; never less)",
    )
    max_folds: int | None = Field(None, ge=1, description="stop after this many folds (None: all)")


class BacktestConfig(_Section):
    cash: float = Field(100_000.0, gt=0, description="starting cash")
    commission: float = Field(0.001, ge=0, lt=0.1, description="fraction of traded value")
    slippage: float = Field(0.0005, ge=0, lt=0.1, description="fraction of price")
    signal: str = Field("agree_voltarget", description="signal-rule plugin")
    signal_options: dict[str, Any] = Field(
        default_factory=dict, description="signal-rule options, e.g. target_vol"
    )
    rebalance: Literal["bar", "horizon"] = Field(
        "horizon", description="rebalance every bar or every h bars"
    )
    max_gross_leverage: float = Field(1.0, gt=0, le=10, description="cap on sum of |weights|")
    max_weight: float = Field(0.5, gt=0, le=10, description="per-asset cap on |weight|")
    allow_short: bool = Field(True, description="allow short positions")
    risk_free: float = Field(
        0.0, ge=0, lt=1, description="annual risk-free rate for Sharpe/Sortino"
    )
    mode: Literal["live", "precomputed"] = Field(
        "live", description="live: one forward pass per bar; precomputed: all bars before the run"
    )
    calendar: Literal["auto", "24/7", "exchange", "forex"] = Field(
        "auto",
        description="annualisation calendar (auto: 24/7 with Saturday bars, forex (24 x 5) with "
        "Sunday-evening or whole-weekday intraday bars, else exchange)",
    )
    min_trade_weight: float = Field(
        0.01, ge=0, lt=1, description="no-trade band: skip same-side weight changes below this"
    )

    @model_validator(mode="after")
    def _reachable_leverage(self) -> BacktestConfig:
        if not self.allow_short and self.max_gross_leverage > 1.0:
            raise _rule(
                f"backtest.max_gross_leverage = {self.max_gross_leverage} is unreachable with "
                "allow_short = false: the broker lends no margin, so a long-only book's buys "
                "are capped at its cash (0.99 x value); set it to 1.0 or allow shorts"
            )
        return self


class ReportConfig(_Section):
    plots: bool = Field(True, description="draw the report plots (plots/*.png)")
    html: bool = Field(True, description="write the self-contained report.html")


class PaperConfig(_Section):
    """``mtl-bt paper``: live polling and scheduled retraining (docs/paper.md)."""

    poll_seconds: float = Field(
        10.0, gt=0, le=86_400, description="seconds between polls of the exchange (--poll-seconds)"
    )
    warmup_bars: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="history bars loaded at start (None: what the model needs)",
    )
    timeout_seconds: float | None = Field(
        None,
        ge=0,
        description="how long past a bar's end a decision waits for a late asset (None: one poll)",
    )
    give_up_seconds: float = Field(
        600.0,
        gt=0,
        description="with --max-bars/--until: end (exit 2) once the exchange was unreachable this long",
    )
    retrain_every: str | int | None = Field(
        None,
        description='retrain in the background every duration ("7d") or bar count (None: never)',
    )
    train_bars: int = Field(2000, ge=10, description="trailing bars a retraining job trains on")
    max_model_age: str | None = Field(
        None, description='a model older than this ("14d") opens no new positions (None: no limit)'
    )

    @field_validator("retrain_every", "max_model_age")
    @classmethod
    def _duration(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"{value} bars: give a count >= 1 or a duration like 7d")
            return value
        if value is not None:
            from mtl_bt.data.timeframe import parse_timeframe

            try:
                parse_timeframe(str(value))
            except ConfigError:
                raise ValueError(
                    f"{value!r} is not a duration; use a number and a unit, e.g. 12h, 7d, 2w"
                ) from None
        return value


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    tasks: list[TaskConfig] = Field(
        default_factory=lambda: [
            TaskConfig(name="return"),
            TaskConfig(name="direction"),
            TaskConfig(name="volatility"),
            TaskConfig(name="volume"),
        ],
        min_length=1,
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    weighting: WeightingConfig = Field(default_factory=WeightingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    paper: PaperConfig = Field(default_factory=PaperConfig)

    def task_names(self) -> list[str]:
        return [f"{t.name}@{h}" for t in self.tasks for h in t.horizons]

    def max_horizon(self) -> int:
        return max(h for t in self.tasks for h in t.horizons)


_MESSAGES = {"finite_number": "must be a finite number (inf and nan are not allowed)"}


def _section_of(loc: tuple[Any, ...]) -> str:
    """``("data", "symbols", 0)`` -> ``"data"``: the section holding the key."""
    parts = list(loc)
    while parts and isinstance(parts[-1], int):
        parts.pop()
    return ".".join(str(p) for p in parts[:-1]) or "top level"


def format_validation_error(error: ValidationError, where: str) -> str:
    """One line naming each bad key, its section and what is allowed."""
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc!r} in section [{_section_of(item['loc'])}]")
        elif item["type"] == "config_rule":  # the message names the keys
            section = ".".join(str(p) for p in item["loc"]) or "top level"
            lines.append(f"in section [{section}]: {item['msg']}")
        else:
            msg = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
            lines.append(f"{loc!r} in section [{_section_of(item['loc'])}]: {msg}")
    return f"invalid config {where}: " + "; ".join(lines)


def from_dict(data: dict[str, Any], where: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as TOML, else strings)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=5")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(value.strip())
    return data


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read and validate a TOML config (``None``: all defaults)."""
    data: dict[str, Any] = {}
    where = "(defaults)"
    if path is not None:
        path = Path(path)
        where = f"in {path}"
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return from_dict(apply_overrides(data, overrides or []), where)


def dumps(config: Config) -> str:
    """The resolved config as TOML (written next to every run's artefacts)."""
    return _to_toml(config.model_dump(mode="json", exclude_none=True))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _to_toml(data: dict[str, Any]) -> str:
    out: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in item.items())
                out.append("")
            continue
        out.append(f"[{section}]")
        out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in body.items())
        out.append("")
    return "\n".join(out)
