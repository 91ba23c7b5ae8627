"""A paper run in its own process (the crash tests kill it with SIGKILL).

    python paper_child.py CONFIG.json MODEL OUT UNTIL [--mtl] [--slow-commit MARKER]

or forked from the test process (``main`` as the target: no second import of torch).

``--mtl``: the default strategy (``PaperMTLStrategy`` with the model), else ``Momentum``.
``--slow-commit``: before every COMMIT of the journal, touch MARKER and wait, so the
parent can kill the process in the middle of a database transaction.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import pandas as pd  # noqa: E402

from mtl_bt import config as config_mod  # noqa: E402
from mtl_bt.paper import run_paper  # noqa: E402
from mtl_bt.paper import state as state_mod  # noqa: E402
from strategies import Momentum  # noqa: E402


def forked(argv: list[str]) -> None:
    """Target of a forked process: run, then leave without the parent's atexit handlers."""
    code = 1
    try:
        code = main(argv)
    except BaseException:
        import traceback

        Path(argv[2]).mkdir(parents=True, exist_ok=True)
        (Path(argv[2]) / "child-error.txt").write_text(traceback.format_exc())
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    cfg_path, model, out, until = argv[:4]
    if "--slow-commit" in argv:
        marker = Path(argv[argv.index("--slow-commit") + 1])
        commit = state_mod.PaperState.commit

        class SlowCursor:
            def __init__(self, db):
                self._db = db

            def execute(self, sql, *args):
                if sql == "COMMIT":
                    marker.write_text("in commit")
                    time.sleep(5)
                return self._db.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self._db, name)

        def slow_commit(self, rec):
            real = self.db
            self.db = SlowCursor(real)
            try:
                return commit(self, rec)
            finally:
                self.db = real

        state_mod.PaperState.commit = slow_commit
    cfg = config_mod.from_dict(json.loads(Path(cfg_path).read_text()))
    strategy = None if "--mtl" in argv else (Momentum, {})
    run_paper(cfg, model, out, until=pd.Timestamp(until), echo=None, strategy=strategy)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
