"""The shipped real image set (scikit-learn's digits as an ImageFolder tree, ``--data digits``) and the
ResNet-20 pretrained here on its own split (``pretrain-digits``, ``data/weights``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvxattn_lib.cifar import digits as D
from cvxattn_lib.cifar import pretrain as P
from cvxattn_lib.cifar import resnet as R
from cvxattn_lib.cifar.cli import load_results, main
from cvxattn_lib.cifar.names import parse_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root whose digits tree is made once for this module."""
    root = tmp_path_factory.mktemp("root")
    D.ensure_digits(root)
    return root


# --- the split ----------------------------------------------------------------------------------------

def test_split_is_fixed_disjoint_complete_and_per_class():
    images, labels = D.source_arrays()
    assert images.shape == (1797, 8, 8) and images.max() == 16 and np.bincount(labels).size == 10
    s = D.split_indices(labels)
    assert {k: v.size for k, v in s.items()} == {"pretrain": 898, "train": 450, "test": 449}
    rows = np.concatenate(list(s.values()))
    assert np.array_equal(np.sort(rows), np.arange(1797))  # disjoint and complete
    for k in range(10):  # every class shared out by its own proportions
        n_k = int(np.sum(labels == k))
        assert int(np.sum(labels[s["pretrain"]] == k)) == round(0.5 * n_k)
        assert int(np.sum(labels[s["train"]] == k)) == round(0.25 * n_k)
    again = D.split_indices(labels)
    assert all(np.array_equal(s[k], again[k]) for k in s)  # seeded: the same split every time


def test_pixels_scale_exactly():
    assert D.to_uint8(np.array([0, 8, 16])).tolist() == [0, 128, 255]


# --- the tree -----------------------------------------------------------------------------------------

def test_tree_holds_the_split_as_pngs_with_checksum_and_is_kept(data_root):
    folder = D.ensure_digits(data_root)
    assert folder == data_root / "digits" / "images"
    assert D.tree_sha256(folder) == D.CONTENT_SHA256
    for split in D.SPLITS:
        im, lab, rows = D.split_arrays(split)
        files = sorted((folder / split).glob("*/*.png"))
        assert len(files) == len(rows)
        names = sorted(f"{lab[i]}/{r:04d}.png" for i, r in enumerate(rows))
        assert sorted(f.relative_to(folder / split).as_posix() for f in files) == names
    mtime = (folder / "COMPLETE").stat().st_mtime_ns
    assert D.ensure_digits(data_root) == folder and (folder / "COMPLETE").stat().st_mtime_ns == mtime
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_imagefolder_reading_gives_the_split_pixels(data_root):
    te = D.load_digits_split("test", data_root)
    assert te.dataset == "digits" and te.source == "imagefolder" and te.n_classes == 10
    assert te.class_names == tuple(str(k) for k in range(10))
    im, lab, _ = D.split_arrays("test")
    assert te.images.shape == (449, 3, 8, 8)
    # the same multiset of (label, pixels): PNG is lossless and grey is read as three equal channels
    assert np.array_equal(te.images[:, 0], te.images[:, 2])
    key = sorted((int(y), x.tobytes()) for x, y in zip(te.images[:, 0], te.labels))
    assert key == sorted((int(y), x.tobytes()) for x, y in zip(im, lab))
    assert te.labels[:10].tolist() == list(range(10))  # classes interleaved: any first n is balanced


def test_damaged_tree_is_rebuilt_and_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    folder = D.ensure_digits(tmp_path)
    victim = next((folder / "train" / "3").glob("*.png"))
    victim.write_bytes(next((folder / "train" / "4").glob("*.png")).read_bytes())
    with pytest.warns(RuntimeWarning, match="content sha256"):
        assert D.ensure_digits(tmp_path) == folder
    assert D.tree_sha256(folder) == D.CONTENT_SHA256
    other = tmp_path / "other"

    def boom(path, files):
        (path / "train").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "_write_tree", boom)
    with pytest.raises(KeyboardInterrupt):
        D.ensure_digits(other)
    assert not (other / "digits" / "images").exists()
    assert list((other / "digits").iterdir()) == []


def test_cli_data_digits_through_cache_heads_results_and_table(data_root, tmp_path, capsys):
    assert parse_data("digits") == ("digits", None)
    common = ["--data-root", str(data_root), "--data", "digits", "--backbone", "resnet20:layer2",
              "--subset", "40", "--test-subset", "20", "--batch-size", "20", "--no-progress"]
    with pytest.warns(UserWarning, match="RANDOM"):
        assert main(["train", *common, "--heads", "linear,linear_flat", "--betas", "0.1",
                     "--reduce-dim", "4", "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "digits (image folder, 10 classes): 40 train / 20 test" in out
    res = load_results(tmp_path / "r.json")
    assert res["data"]["dataset"] == "digits" and res["data"]["classes"] == 10
    assert res["backbone"]["tokens"] == 256 and "digits-c10" in res["data"]["train_cache"]  # 32 x 32 input
    assert all(r["classes"] == 10 for r in res["rows"])
    assert (data_root / "cache" / "digits").is_dir()
    assert main(["extract", *common, "--data-name", "x"]) == 2
    assert "--data-name" in capsys.readouterr().err
    assert main(["extract", "--data", "digitz"]) == 2
    assert "'digits'" in capsys.readouterr().err


# --- pretraining --------------------------------------------------------------------------------------

def test_pretraining_is_seeded_and_writes_weights_the_backbone_reads(tmp_path):
    kw = dict(epochs=1, n=40, progress=False, verbose=False)
    a = P.pretrain_digits(tmp_path / "a.safetensors", **kw)
    b = P.pretrain_digits(tmp_path / "b.safetensors", **kw)
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # deterministic
    assert a["sha256"] == b["sha256"] == R.file_sha256(tmp_path / "a.safetensors")
    c = P.pretrain_digits(None, seed=1, **kw)
    assert not torch.equal(c["model"].conv1.weight, a["model"].conv1.weight)
    meta = R.weights_metadata(tmp_path / "a.safetensors")
    assert meta["input_size"] == "16" and json.loads(meta["recipe"])["seed"] == 0
    assert 0.0 <= a["heldout_test_accuracy"] <= 1.0 and a["heldout_test_n"] == 449
    bb = R.ResNetBackbone(f"resnet20:{tmp_path / 'a.safetensors'}:layer2")
    assert bb.input_size == (16, 16) and bb.token_shape() == (64, 32)
    assert bb.tokens(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).shape == (2, 64, 32)
    assert "bilinear16x16" in bb.transform and f"{a['mean']:.4g}" in bb.transform
    with pytest.raises(ValueError, match="input_size"):
        R.input_spec({"input_size": "10"})


def test_pretrain_cli_writes_where_told(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    assert main(["pretrain-digits", "--out", str(out), "--epochs", "1", "--subset", "20",
                 "--no-progress"]) == 0
    assert out.is_file() and "held-out accuracy" in capsys.readouterr().out
    assert main(["pretrain-digits", "--out", str(tmp_path / "w.pt")]) == 2
    assert ".safetensors" in capsys.readouterr().err


# --- the shipped weights ------------------------------------------------------------------------------

def test_shipped_weights_match_their_checksum_and_load_with_every_key():
    path = P.shipped_weights()
    assert R.file_sha256(path) == P.WEIGHTS_SHA256
    state = R.load_resnet_weights(path)
    model = R.resnet("resnet20", num_classes=10)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    meta = R.weights_metadata(path)
    recipe = json.loads(meta["recipe"])
    assert meta["input_size"] == "16" and recipe["seed"] == 0 and recipe["epochs"] == P.DEFAULTS["epochs"]
    bb = R.ResNetBackbone(P.digits_backbone("layer2"))
    assert bb.pretrained and bb.token_shape() == (64, 32)


def test_shipped_weights_checksum_is_enforced(monkeypatch):
    monkeypatch.setattr(P, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="not the shipped weights"):
        P.shipped_weights()
    assert P.shipped_weights(verify=False).is_file()
