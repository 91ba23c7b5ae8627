"""``mtl-bt compare``: MTL variants vs single-task and buy-and-hold, over seeds, in parallel.

Public API: :func:`mtl_bt.compare.runner.compare` (driver), :mod:`.variants`, :mod:`.executor`
(local processes or Ray), :mod:`.table` (comparison table and statistics).
"""
