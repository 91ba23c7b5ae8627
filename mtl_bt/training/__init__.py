"""Dataset assembly, purged walk-forward splits, the trainer and the pipeline."""

from mtl_bt.training.dataset import Dataset, assemble, build_dataset, symbol_block
from mtl_bt.training.pipeline import (
    Components,
    FoldData,
    TrainResult,
    build_components,
    prepare_fold,
    single_task,
    splits_for,
    train_fold,
    train_walk_forward,
    write_outputs,
)
from mtl_bt.training.splits import Split, walk_forward_splits
from mtl_bt.training.trainer import Batches, TrainingError, fit, make_batches, predict_raw

__all__ = [
    "Batches",
    "Components",
    "FoldData",
    "Dataset",
    "Split",
    "TrainResult",
    "TrainingError",
    "assemble",
    "build_components",
    "build_dataset",
    "fit",
    "make_batches",
    "predict_raw",
    "prepare_fold",
    "single_task",
    "splits_for",
    "symbol_block",
    "train_fold",
    "train_walk_forward",
    "walk_forward_splits",
    "write_outputs",
]
