"""The switch of the run-time plugin guards (light: the CLI imports it at start-up).

``--no-guards`` on ``mtl-bt train`` / ``mtl-bt run`` sets ``MTL_BT_NO_GUARDS=1`` (so
worker processes see it too); ``mtl_bt.training.guards`` reads it. Unsafe: a plugin
that peeks into the future then goes unnoticed.
"""

from __future__ import annotations

import os

ENV = "MTL_BT_NO_GUARDS"

#: help text of the ``--no-guards`` flag
NO_GUARDS_HELP = (
    "UNSAFE: skip the look-ahead guard of third-party features and tasks (a plugin that "
    "peeks into the future then goes unnoticed)"
)


def disable_guards() -> None:
    """What ``--no-guards`` does (also for worker processes started afterwards)."""
    os.environ[ENV] = "1"


def guards_enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("1", "true", "yes")
