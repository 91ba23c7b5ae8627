"""Evaluation metrics: trading performance (performance.py) and prediction quality."""
