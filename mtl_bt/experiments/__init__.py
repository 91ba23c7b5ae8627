"""Experiments that test claims about multi-task learning on a config's data.

Each module is a command, ``python -m mtl_bt.experiments.<name> CONFIG --seeds N --out DIR``,
that trains real models on the config's walk-forward folds, scores them out of sample and
writes one table of paired differences with confidence intervals (docs/experiments.md):

- ``transfer``: leave-one-asset-out: a model trained on the other assets forecasts the
  held-out asset, against that asset's own model.
- ``pooling``: one network pooled over every asset against one network per asset.

``common`` holds what they share (loading, per-pool training, per-bar metric terms, the
paired table and the command line); new experiments build on it.
"""
