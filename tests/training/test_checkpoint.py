"""Checkpoints: atomic round trip, corrupt/foreign files, mismatches, no code execution."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from mtl_bt import checkpoint as ckpt
from mtl_bt.errors import CheckpointError


def _checkpoint(**over) -> ckpt.Checkpoint:
    fields = dict(
        state_dict={"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)},
        architecture="shared_bottom",
        init_kwargs={"in_features": 3, "tasks": [{"name": "return@1"}], "hidden": [4]},
        config={"training": {"epochs": 2}},
        feature_spec={"names": ["a"], "params": {"a": {"window": np.int64(5)}}},
        feature_columns=["f1", "f2", "f3"],
        tasks=[{"name": "return@1", "kind": "return", "horizon": 1}],
        scaler={"kind": "standard", "center": np.zeros(3), "scale": np.ones(3)},
        symbols=["BTC/USDT", "ETH/USDT"],
        fold={"fold": 0, "train_start": "2024-01-01T00:00:00+00:00", "purge": 1},
        versions=ckpt.versions(),
        lookback=1,
    )
    fields.update(over)
    return ckpt.Checkpoint(**fields)


def test_round_trip(tmp_path):
    path = ckpt.save(tmp_path / "sub" / "fold_000.pt", _checkpoint())
    loaded = ckpt.load(path)
    assert loaded.path == path
    assert torch.equal(loaded.state_dict["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert loaded.scaler["center"] == [0.0, 0.0, 0.0]  # numpy became plain lists
    assert loaded.feature_spec["params"]["a"]["window"] == 5
    assert loaded.task_names == ["return@1"]
    assert loaded.versions["torch"] == torch.__version__
    assert set(loaded.versions) == {"mtl-bt", "torch", "python"}
    assert [p.name for p in path.parent.iterdir()] == ["fold_000.pt"]  # no temp files left


def test_save_refuses_objects_instead_of_writing_an_unloadable_file(tmp_path):
    class Obj:
        pass

    with pytest.raises(CheckpointError, match=r"init_kwargs\.bad"):
        ckpt.save(tmp_path / "x.pt", _checkpoint(init_kwargs={"bad": Obj()}))
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = ckpt.save(tmp_path / "m.pt", _checkpoint())
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save(path, _checkpoint(symbols=["X"]))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("cut", [0, 10, 200, -30])
def test_truncated_file(tmp_path, cut):
    path = ckpt.save(tmp_path / "m.pt", _checkpoint())
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(CheckpointError, match="m.pt"):
        ckpt.load(path)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt"):
        ckpt.load(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an mtl-bt checkpoint"):
        ckpt.load(other)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing.pt")
    newer = tmp_path / "newer.pt"
    payload = _checkpoint().to_payload()
    payload["format_version"] = 99
    torch.save(ckpt.plain(payload), newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        ckpt.load(newer)


_MARKER_ENV = "MTL_BT_TEST_MARKER"


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ[_MARKER_ENV]}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv(_MARKER_ENV, str(marker))
    payload = _checkpoint().to_payload()
    payload["config"] = {"x": _Evil()}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)  # a real torch file whose pickle calls os.system
    raw = path.read_bytes()
    assert b"system" in raw  # the payload really is in there
    with pytest.raises(CheckpointError, match="evil.pt"):
        ckpt.load(path)
    assert not marker.exists()
    # the same with a bare pickle file
    bare = tmp_path / "evil.pkl"
    bare.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="evil.pkl"):
        ckpt.load(bare)
    assert not marker.exists()
    # control: an unsafe loader does run it (so the assertions above can fail)
    pickle.loads(bare.read_bytes())
    assert marker.exists()


def test_check_compatible_describes_each_mismatch():
    c = _checkpoint()
    ckpt.check_compatible(c, ["f1", "f2", "f3"], ["return@1"], 3)  # matches: no error
    with pytest.raises(CheckpointError, match=r"checkpoint only \['f3'\], given only \['g'\]"):
        ckpt.check_compatible(c, ["f1", "f2", "g"])
    with pytest.raises(CheckpointError, match="different order"):
        ckpt.check_compatible(c, ["f2", "f1", "f3"])
    with pytest.raises(CheckpointError, match=r"tasks differ.*volatility@1"):
        ckpt.check_compatible(c, task_names=["volatility@1"])
    with pytest.raises(CheckpointError, match="checkpoint 3 features, given 4"):
        ckpt.check_compatible(c, in_features=4)


@pytest.mark.parametrize(
    "payload",
    [
        {"format": "mtl-bt-checkpoint", "when": __import__("datetime").datetime(2024, 1, 1)},
        {"format": "mtl-bt-checkpoint", "obj": __import__("fractions").Fraction(1, 3)},
    ],
    ids=["datetime", "fraction"],
)
def test_checkpoint_errors_never_advise_loosening_weights_only(tmp_path, payload):
    """torch's own message suggests weights_only=False / add_safe_globals: the one thing a
    user must not do with a file they did not write. Our error keeps the reason only."""
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        ckpt.load(path)
    text = str(err.value)
    assert "Unsupported global" in text
    assert "weights_only" not in text and "safe_globals" not in text
