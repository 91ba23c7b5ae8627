"""Which config settings a resumed paper run may change.

A resumed run must decide as the run it continues: the settings that shape
decisions (data symbols/timeframe/source, features, tasks, model, training,
walk_forward, backtest incl. broker and signal, the paper run's retraining and
model-age rules) are part of the run's identity and refused when they differ.
Settings that only change *how* it operates (how often it polls, how long it
waits for a late asset, retries, backoff, rate limit, request timeout, the data
cache, the report's look) may change on resume; each invocation's operational
settings are journaled (table ``sessions``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: dotted config paths that never change a decision
OPERATIONAL = (
    "paper.poll_seconds",
    "paper.timeout_seconds",
    "paper.give_up_seconds",
    "data.cache",
    "data.options.retries",
    "data.options.backoff",
    "data.options.max_backoff",
    "data.options.timeout",
    "data.options.rate_limit_ms",
    "data.options.limit",
    "report",
)


def _split(plain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(decision part, operational part) of a plain config dict."""
    decision = json.loads(json.dumps(plain, default=str))
    operational: dict[str, Any] = {}
    for path in OPERATIONAL:
        *parents, leaf = path.split(".")
        node = decision
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and leaf in node:
            operational[path] = node.pop(leaf)
    return decision, operational


def decision_settings(cfg: Any) -> dict[str, Any]:
    return _split(cfg.model_dump(mode="json"))[0]


def operational_settings(cfg: Any) -> dict[str, Any]:
    return _split(cfg.model_dump(mode="json"))[1]


def decision_sha256(cfg: Any) -> str:
    text = json.dumps(decision_settings(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as ``key (old -> new)``. A section or key only one
    side has is a schema change between mtl-bt versions (a new setting's default keeps the
    old behaviour), not a change of the run's settings: it is not compared. A plugin's
    options (a free-form table) are compared whole."""
    out = []
    for key in sorted(set(old) & set(new), key=str):
        a, b = old[key], new[key]
        if prefix.endswith("options.") or key == "options":
            if a != b:
                out.append(f"{prefix}{key} ({a!r} -> {b!r})")
            continue
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path} ({a!r} -> {b!r})")
    return out
