"""Suite-wide settings: deterministic, single-threaded torch; no network."""

import os

import matplotlib
import torch
from hypothesis import HealthCheck, settings

matplotlib.use("Agg", force=True)
torch.set_num_threads(1)
os.environ.setdefault("MTL_BT_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".cache-unused"))

settings.register_profile(
    "mtl_bt", deadline=None, max_examples=40, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("mtl_bt")
