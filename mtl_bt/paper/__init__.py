"""Paper trading: live feeds, a simulated broker and a crash-safe SQLite journal."""

from mtl_bt.paper.runner import PaperResult, run_paper
from mtl_bt.paper.state import PaperState

__all__ = ["PaperResult", "PaperState", "run_paper"]
