"""The example third-party plugin, installed for real, takes part end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_example"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> dict[str, str]:
    """pip-install the example distribution into a private target folder."""
    target = tmp_path_factory.mktemp("example_site")
    build = tmp_path_factory.mktemp("example_build")
    # copy the source so the build leaves no egg-info in the repo
    src = build / "plugin_example"
    src.mkdir()
    for name in ("pyproject.toml", "mtl_bt_example.py"):
        (src / name).write_text((EXAMPLE / name).read_text())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    env.pop("MTL_BT_DISABLE_PLUGINS", None)
    env["MTL_BT_LOAD_PLUGINS"] = "builtin,example"  # the example, not whatever else is here
    return env


def test_example_plugin_is_listed_with_its_distribution(installed_example):
    out = subprocess.run(
        [str(BIN / "mtl-bt"), "plugins", "--json"],
        env=installed_example,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    entries = {(e["kind"], e["name"]): e for e in json.loads(out)}
    mine = entries[("weighting", "example_inverse_loss")]
    assert mine["plugin"] == "example"
    assert mine["distribution"] == "mtl-bt-example-plugin"
    assert mine["version"] == "0.1.0"
    assert entries[("weighting", "equal")]["distribution"] == "mtl-bt"


def test_example_plugin_can_be_disabled(installed_example):
    env = dict(installed_example, MTL_BT_DISABLE_PLUGINS="example")
    out = subprocess.run(
        [str(BIN / "mtl-bt"), "plugins", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "example_inverse_loss" not in {e["name"] for e in json.loads(out)}


def test_example_plugin_drives_real_walk_forward_training(installed_example, tmp_path):
    """`mtl-bt train` with the third-party weighting named in the config."""
    tiny = ROOT / "tests" / "e2e" / "tiny.toml"
    out = tmp_path / "train"
    subprocess.run(
        [
            str(BIN / "mtl-bt"),
            "train",
            str(tiny),
            "--out",
            str(out),
            "--quiet",
            "--set",
            'weighting.name="example_inverse_loss"',
            "--set",
            "walk_forward.max_folds=1",
        ],
        env=installed_example,
        check=True,
        capture_output=True,
        text=True,
    )
    log = pd.read_csv(out / "train_log.csv")
    weights = log[[c for c in log.columns if c.startswith("weight_")]]
    assert len(weights.columns) == 3
    # inverse-loss weights are not all 1 and sum to K on every logged epoch
    assert np.allclose(weights.sum(axis=1), 3.0, atol=1e-4)
    assert (weights.max(axis=1) - weights.min(axis=1) > 1e-3).all()
    assert "example_inverse_loss" in (out / "config.toml").read_text()


def test_example_plugin_passes_the_conformance_kit(installed_example):
    """What the guide tells a plugin author to write: one check per item, run against
    the installed distribution (entry point `example`)."""
    code = (
        "from mtl_bt.testing import check_weighting; "
        "r = check_weighting('example_inverse_loss'); print(len(r.laws))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=installed_example,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert int(out) >= 2
