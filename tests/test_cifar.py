"""CIFAR-100 pipeline on the CPU, offline: a tiny fake CIFAR-100 in the real on-disk format, random
backbone weights, the CLI end to end, crash-safe resumable cache, OOM back-off and bad inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from cvxattn_lib import cifar
from cvxattn_lib.cifar import backbone as bbmod
from cvxattn_lib.cifar import cache as cmod
from cvxattn_lib.cifar import heads as hmod
from cvxattn_lib.cifar.cli import load_results, main
from cvxattn_lib.cifar.data import (CIFAR100_ARCHIVE, CIFAR100_MD5, SOURCE_REAL, SOURCE_STANDIN,
                                    unpickle_cifar)

SMALL = "test_vit"  # a 0.4 M-parameter timm ViT (160 px, 1 prefix token): fast on a CPU
N_CLASSES_USED = 10
N_TRAIN, N_TEST = 60, 30


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never touch the network: the hub is unreachable and no weights are cached."""
    monkeypatch.setattr(bbmod, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(bbmod, "_cached_weights", lambda cfg: None)


def _fake_split(split: str, n: int, seed: int):
    """Images with class structure (the stand-in's generator) restricted to 10 classes."""
    s = cifar.synthetic_cifar100(split, n * N_CLASSES_USED, seed=seed)
    keep = np.flatnonzero(s.labels < N_CLASSES_USED)[:n]
    return cifar.CifarSplit(s.images[keep], s.labels[keep], s.coarse[keep], s.class_names, split, SOURCE_REAL)


@pytest.fixture
def fake_root(tmp_path):
    """``tmp_path/data`` holding a fake CIFAR-100 in torchvision's format, plus its md5 manifest."""
    root = tmp_path / "data"
    splits = {"train": _fake_split("train", N_TRAIN, 7), "test": _fake_split("test", N_TEST, 7)}
    sums = cifar.write_cifar_folder(root, splits)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(sums))
    return root, manifest, splits


def test_fake_data_is_in_the_real_format_and_reads_back(fake_root):
    root, manifest, splits = fake_root
    path = root / "cifar-100-python" / "train"
    raw = unpickle_cifar(path.read_bytes(), path)  # the restricted unpickler reads the real format
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape == (N_TRAIN, 3072)
    assert {b"fine_labels", b"coarse_labels", b"filenames"} <= set(raw)
    path = root / "cifar-100-python" / "meta"
    assert len(unpickle_cifar(path.read_bytes(), path)[b"fine_label_names"]) == 100
    for split in ("train", "test"):
        got = cifar.load_cifar100(split, root, manifest=manifest, download_missing=False)
        assert got.source == SOURCE_REAL and got.images.shape == (len(splits[split].labels), 3, 32, 32)
        np.testing.assert_array_equal(got.images, splits[split].images)
        np.testing.assert_array_equal(got.labels, splits[split].labels)
    ds = cifar.CifarDataset(got)
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.shape == (4,)
    # R, G, B planes as in CIFAR: pixel (0, 5) of image 0 is data[0, 5], data[0, 1029], data[0, 2053]
    train = cifar.load_cifar100("train", root, manifest=manifest, download_missing=False)
    np.testing.assert_array_equal(train.images[0, :, 0, 5], raw[b"data"][0, [5, 1029, 2053]])


def test_official_md5s_reject_files_that_are_not_cifar100(fake_root):
    root, manifest, _ = fake_root
    with pytest.raises(cifar.CifarDataError, match=r"md5 .* expected " + CIFAR100_MD5["train"]):
        cifar.load_cifar100("train", root, download_missing=False)
    # a corrupted file is caught by its own manifest too, and named
    (root / "cifar-100-python" / "test").write_bytes(b"garbage")
    with pytest.raises(cifar.CifarDataError, match="test has md5"):
        cifar.load_cifar100("test", root, manifest=manifest, download_missing=False)
    (root / "cifar-100-python" / "meta").unlink()
    with pytest.raises(cifar.CifarDataError, match="meta is missing"):
        cifar.load_cifar100("train", root, manifest=manifest, download_missing=False)
    with pytest.raises(ValueError, match="manifest must map"):
        cifar.load_cifar100("train", root, manifest={"train": "x"}, download_missing=False)


def test_missing_data_says_so_plainly_and_uses_a_labelled_standin(tmp_path, capsys):
    with pytest.warns(cifar.DataUnavailableWarning) as rec:
        s = cifar.load_cifar100("train", tmp_path, download_missing=False, standin_size=200, seed=3)
    msg = str(rec[-1].message)
    assert CIFAR100_ARCHIVE["url"] in msg and CIFAR100_ARCHIVE["md5"] in msg
    assert str(tmp_path / "cifar-100-python") in msg and "SYNTHETIC STAND-IN" in msg
    assert "SYNTHETIC STAND-IN" in capsys.readouterr().out
    assert s.source == SOURCE_STANDIN and s.images.shape == (200, 3, 32, 32) and s.images.dtype == np.uint8
    assert set(np.unique(s.labels)) <= set(range(100)) and s.class_names[0].startswith("standin")
    again = cifar.synthetic_cifar100("train", 200, seed=3)
    np.testing.assert_array_equal(again.images, s.images)
    assert not np.array_equal(cifar.synthetic_cifar100("train", 200, seed=4).images, s.images)
    with pytest.raises(cifar.CifarDataError, match="not available"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cifar.load_cifar100("train", tmp_path, download_missing=False, standin=False)


def test_standin_classes_are_learnable():
    """Heads on the stand-in beat chance by far: nearest class mean on raw pixels, train -> test."""
    tr, te = cifar.synthetic_cifar100("train", 2000, 0), cifar.synthetic_cifar100("test", 500, 0)
    Xtr, Xte = tr.images.reshape(len(tr), -1) / 255.0, te.images.reshape(len(te), -1) / 255.0
    means = np.stack([Xtr[tr.labels == k].mean(0) for k in range(100)])
    pred = np.argmin((means**2).sum(1)[None] - 2 * Xte @ means.T, axis=1)
    assert (pred == te.labels).mean() > 0.2  # chance is 0.01


def test_wrong_data_root(tmp_path, capsys):
    with pytest.raises(ValueError, match="does not exist"):
        cifar.load_cifar100("train", tmp_path / "nope", download_missing=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        cifar.load_cifar100("train", tmp_path / "afile", download_missing=False)
    assert main(["extract", "--data-root", str(tmp_path / "nope"), "--backbone", SMALL]) == 2
    assert "is not an existing folder" in capsys.readouterr().err


def test_backbone_tokens_drop_prefix_and_resize_on_device():
    bb = cifar.Backbone(SMALL, pretrained=False, device="cpu")
    assert bb.num_prefix_tokens == 1 and bb.input_size == (160, 160) and not bb.training
    assert not any(p.requires_grad for p in bb.parameters())
    imgs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    tok = bb.tokens(imgs)
    x = torch.nn.functional.interpolate(imgs.float() / 255, size=(160, 160), mode="bilinear",
                                        align_corners=False)
    with torch.no_grad():
        full = bb.model.forward_features((x - 0.5) / 0.5)
    assert full.shape[1] == tok.shape[1] + 1
    torch.testing.assert_close(tok, full[:, 1:])
    # random weights are seeded: the same in every process (the cache key relies on it)
    other = cifar.Backbone(SMALL, pretrained=False, device="cpu")
    torch.testing.assert_close(other.tokens(imgs), tok)


def test_gmlp_s16_224_gives_196_tokens_of_256_and_warns_offline(tmp_path):
    with pytest.warns(cifar.PretrainedUnavailableWarning, match="RANDOM weights"):
        bb = cifar.Backbone("gmlp_s16_224", pretrained=True, device="cpu")
    assert bb.pretrained is False and bb.input_size == (224, 224)
    data = cifar.synthetic_cifar100("test", 3, seed=0)
    cache = cifar.extract_features(bb, data, tmp_path, batch_size=2, progress=False)
    assert cache.features.shape == (3, 196, 256) and cache.features.dtype == np.float16
    assert np.isfinite(cache.features).all() and cache.meta["pretrained"] is False
    np.testing.assert_allclose(cache.features[2], bb.tokens(torch.from_numpy(data.images[2:])).numpy()[0],
                               rtol=1e-2, atol=1e-2)  # fp16 storage


def test_unknown_backbone(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a timm model"):
        cifar.Backbone("gmlp_s16_2244", pretrained=False)
    assert main(["extract", "--data-root", str(tmp_path), "--backbone", "no_such_net"]) == 2
    assert "not a timm model" in capsys.readouterr().err


def test_oom_backoff_halves_the_batch_and_gives_the_same_result():
    images = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    seen = []

    def fn(batch):
        seen.append(len(batch))
        if len(batch) > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.from_numpy(batch * 2)

    halvings = []
    out, bs = cifar.run_with_backoff(fn, images, 16, on_backoff=halvings.append)
    torch.testing.assert_close(out, torch.from_numpy(images * 2))
    assert bs == 4 and halvings == [8, 4] and seen[:3] == [16, 8, 4]
    # a RuntimeError saying "out of memory" (older torch) counts too; other errors propagate
    out, bs = cifar.run_with_backoff(
        lambda b: (_ for _ in ()).throw(RuntimeError("CUDA error: out of memory")) if len(b) > 10
        else torch.from_numpy(b), images, 32)
    assert bs == 8 and out.shape == (40, 3)
    with pytest.raises(ValueError, match="boom"):
        cifar.run_with_backoff(lambda b: (_ for _ in ()).throw(ValueError("boom")), images, 8)
    with pytest.raises(torch.OutOfMemoryError):
        cifar.run_with_backoff(lambda b: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")), images, 4)


class Interrupt(Exception):
    pass


def _extract(root, data, **kw):
    bb = cifar.Backbone(SMALL, pretrained=False, device="cpu")
    return cifar.extract_features(bb, data, root, batch_size=4, chunk_size=8, progress=False, **kw)


def test_interrupted_extraction_resumes_and_gives_identical_bytes(fake_root, tmp_path):
    root, manifest, _ = fake_root
    data = cifar.load_cifar100("train", root, manifest=manifest, download_missing=False).subset(40)
    ref = _extract(tmp_path / "ref", data)  # uninterrupted run in another root

    calls = []

    def stop_after_two(done):
        calls.append(done)
        if len(calls) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        _extract(root, data, after_chunk=stop_after_two)
    folder = cmod.cache_dir(root) / ref.key
    assert not (folder / "features.npy").exists() and not (folder / "meta.json").exists()
    assert json.loads((folder / "progress.json").read_text())["done"] == 16
    assert cmod.find_caches(root) == []  # nothing half-written is visible as a cache
    calls.clear()
    done = _extract(root, data, after_chunk=calls.append)
    assert calls == [24, 32, 40]  # resumed at the first unrecorded chunk
    assert (folder / "features.npy").read_bytes() == (ref.path / "features.npy").read_bytes()
    assert not (folder / "progress.json").exists() and not (folder / "features.npy.partial").exists()
    assert done.features.dtype == np.float16 and done.features.shape == (40, 100, 64)
    # memory-mappable without pickle
    mm = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
    assert isinstance(mm, np.memmap)
    np.testing.assert_array_equal(done.labels, data.labels)
    # loading an existing cache does not extract again
    calls.clear()
    _extract(root, data, after_chunk=calls.append)
    assert calls == []


def test_kill_between_metadata_and_rename_finishes_without_extracting(fake_root, monkeypatch):
    root, manifest, _ = fake_root
    data = cifar.load_cifar100("test", root, manifest=manifest, download_missing=False).subset(16)
    real_replace = cmod.os.replace

    def die_on_final_rename(src, dst):
        if str(dst).endswith("features.npy"):
            raise Interrupt
        return real_replace(src, dst)

    monkeypatch.setattr(cmod.os, "replace", die_on_final_rename)
    with pytest.raises(Interrupt):
        _extract(root, data)
    monkeypatch.setattr(cmod.os, "replace", real_replace)
    calls = []
    done = _extract(root, data, after_chunk=calls.append)
    assert calls == []  # every chunk was recorded: only the rename was left to do
    cifar.open_cache(done.path)  # checksums match


def test_corrupt_cache_is_detected_and_rebuilt(fake_root):
    root, manifest, _ = fake_root
    data = cifar.load_cifar100("test", root, manifest=manifest, download_missing=False)
    good = _extract(root, data)
    feat = good.path / "features.npy"
    original = feat.read_bytes()
    # a flipped byte in the data: only the md5 sees it
    flipped = bytearray(original)
    flipped[-3] ^= 0xFF
    feat.write_bytes(bytes(flipped))
    cifar.open_cache(good.path, verify=False)
    with pytest.raises(cifar.CacheCorruptError, match="md5"):
        cifar.open_cache(good.path)
    # truncation: caught by the size check even without md5
    feat.write_bytes(original[:-100])
    with pytest.raises(cifar.CacheCorruptError, match="bytes"):
        cifar.open_cache(good.path, verify=False)
    feat.write_bytes(b"not a numpy file" + original[16:])  # same size, header overwritten
    with pytest.raises(cifar.CacheCorruptError, match="cannot be read"):
        cifar.open_cache(good.path)
    # the block checksums are the md5s of consecutive slices of the file
    blocks = cmod.block_md5s(feat, block=1000, workers=3)
    assert len(blocks) == -(-len(original) // 1000)
    assert blocks[1] == __import__("hashlib").md5(feat.read_bytes()[1000:2000]).hexdigest()
    with pytest.warns(cifar.CacheRebuildWarning, match="corrupt"):
        rebuilt = _extract(root, data)
    assert feat.read_bytes() == original and rebuilt.key == good.key


def test_cache_key_names_backbone_split_transform_and_version(fake_root, monkeypatch):
    root, manifest, _ = fake_root
    data = cifar.load_cifar100("test", root, manifest=manifest, download_missing=False)
    bb = cifar.Backbone(SMALL, pretrained=False, device="cpu")
    f = cmod.cache_fields(bb, data)
    key = cmod.cache_key(f)
    assert key.startswith(f"{SMALL}-random-test-n{N_TEST}-real-v")
    for change in [{"backbone": "x"}, {"split": "train"}, {"transform": "other"}, {"version": "9.9"},
                   {"pretrained": True}, {"n": 5}]:
        assert cmod.cache_key({**f, **change}) != key
    monkeypatch.setattr(cmod, "library_version", lambda: "9.9.9")
    assert "v9.9.9" in cmod.cache_key(cmod.cache_fields(bb, data))


def test_reductions_pca_fit_on_train_and_token_pooling():
    rng = np.random.default_rng(0)
    tr = rng.standard_normal((30, 16, 8)).astype(np.float16) * np.arange(1, 9).astype(np.float16)
    te = rng.standard_normal((10, 16, 8)).astype(np.float16)
    a, b, info = cifar.reduce_features(tr, te, dim=3)
    assert a.shape == (30, 16, 3) and b.shape == (10, 16, 3) and info["method"] == "pca"
    flat = a.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-4)
    C = np.cov(flat.T, bias=True)
    np.testing.assert_allclose(C - np.diag(np.diag(C)), 0, atol=1e-3 * C.max())
    assert np.all(np.diff(np.diag(C)) < 0)  # components in order of variance
    a, b, info = cifar.reduce_features(tr, te, tokens=4)
    grid = tr.astype(np.float32).reshape(30, 4, 4, 8)
    manual = grid.reshape(30, 2, 2, 2, 2, 8).mean((2, 4)).reshape(30, 4, 8)
    np.testing.assert_allclose(a, manual, rtol=1e-5, atol=1e-5)
    a, _, info = cifar.reduce_features(tr, te, dim=4, method="pool")
    np.testing.assert_allclose(a, tr.astype(np.float32).reshape(30, 16, 4, 2).mean(-1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at most"):
        cifar.reduce_features(tr, te, dim=9)


def test_linear_head_gap_is_a_valid_bound():
    """The dual bound never exceeds the objective of any point, and closes at the optimum."""
    rng = np.random.default_rng(1)
    n, s, d, c = 80, 4, 6, 5
    X = rng.standard_normal((n, s, d))
    y = rng.integers(0, c, n)
    beta = 0.5
    r = hmod.train_head("linear", X, y, X[:10], y[:10], beta, device="cpu", progress=False, classes=c)
    assert r.gap_bound is not None and -1e-12 * r.objective <= r.gap_bound <= 1e-7 * r.objective
    Xbar = X.mean(1)
    # at W = 0 the objective is n log c and the bound lies below it, and below the optimum found
    P = np.full((n, c), 1.0 / c)
    gap0, lower0 = hmod.linear_gap(P, y, Xbar, beta, n * np.log(c))
    assert gap0 > 1e-3 and lower0 <= r.objective + 1e-9
    # a bound from any dual point is below the primal objective of any W (weak duality)
    W = rng.standard_normal((d, c))
    U = Xbar @ W
    value = float(np.sum(np.log(np.exp(U).sum(1)) - U[np.arange(n), y]) + beta / 2 * np.sum(W**2))
    assert r.objective <= value
    _, lower = hmod.linear_gap(np.exp(U) / np.exp(U).sum(1, keepdims=True), y, Xbar, beta, value)
    assert lower <= r.objective + 1e-9


def test_unknown_head_and_missing_convex_solver(tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="unknown head"):
        hmod.check_heads("linear,bogus")
    assert main(["train", "--data-root", str(tmp_path), "--heads", "linear,bogus"]) == 2
    assert "unknown head(s) 'bogus'" in capsys.readouterr().err
    assert main(["train", "--data-root", str(tmp_path), "--heads", "linear",
                 "--solver-option", "max_iter"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    import cvxattn_lib

    # a library without the solvers: neither the attribute nor an importable module
    monkeypatch.delattr(cvxattn_lib, "solvers", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "cvxattn_lib.solvers", None)
    assert "mixer" not in hmod.available_heads()
    assert main(["train", "--data-root", str(tmp_path), "--heads", "mixer"]) == 2
    assert "cvxattn_lib.solvers.fit_head" in capsys.readouterr().err


def test_cli_pipeline_extract_train_report(fake_root, tmp_path, capsys):
    root, manifest, _ = fake_root
    common = ["--data-root", str(root), "--manifest", str(manifest), "--backbone", SMALL, "--no-pretrained",
              "--batch-size", "16", "--no-download", "--no-progress", "--threads", "1", "--fast"]
    assert main(["extract", *common]) == 0
    out = capsys.readouterr().out
    assert f"train: {N_TRAIN} images -> 100 tokens x 64 features" in out
    by_solver = {**hmod.CONVEX_HEADS, **hmod.READOUT_VARIANTS}
    own = [h for h in hmod.available_heads() if h not in by_solver]  # trained in this module
    solved = [h for h in hmod.available_heads() if h in by_solver]  # by cal.solvers.fit_head
    assert own == ["linear", "linear_flat", "mlp_relu", "attention_softmax"]
    res_path = tmp_path / "res.json"
    assert main(["train", *common, "--heads", ",".join(own), "--betas", "0.05,1", "--epochs", "30",
                 "--lr", "3e-3", "--reduce-dim", "12", "--reduce-tokens", "16", "--out", str(res_path)]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-100:" in out and "STAND-IN" not in out
    res = load_results(res_path)
    assert res["data"]["source"] == SOURCE_REAL and res["data"]["n_train"] == N_TRAIN
    assert res["reduction"]["tokens"] == 16 and res["reduction"]["features"] == 12
    assert [(r["head"], r["beta"]) for r in res["rows"]] == [(h, b) for h in own for b in (0.05, 1.0)]
    rows = {(r["head"], r["beta"]): r for r in res["rows"]}
    all_rows = list(res["rows"])
    if solved:  # the convex solvers' heads, on smaller features (their lifted matrices grow as d^3)
        cvx_path = tmp_path / "cvx.json"
        assert main(["train", *common, "--heads", ",".join(solved), "--betas", "0.05", "--reduce-dim", "4",
                     "--reduce-tokens", "4", "--solver-option", "tol=1e-6", "--out", str(cvx_path)]) == 0
        cvx = load_results(cvx_path)
        assert [r["head"] for r in cvx["rows"]] == solved
        all_rows += cvx["rows"]
    for r in all_rows:
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["train_time_s"] > 0 and r["device"] == "cpu"
        assert (r["gap_bound"] is None) == (not r["convex"])
        if r["convex"]:
            assert r["rel_gap"] < 1e-4
        if r["head"] in solved:  # certified to the asked tolerance; the recovered net predicts the same
            assert r["units"] >= 1 and r["rel_gap"] <= 1e-6 * 1.01
            if r["head"] in hmod.READOUT_VARIANTS:  # test logits from the head's own map, no twin
                assert r["twin_rel_diff"] is None
            else:
                assert r["twin_rel_diff"] < 1e-8
    assert rows[("linear", 0.05)]["params"] == 12 * 100
    assert rows[("linear_flat", 0.05)]["params"] == 16 * 12 * 100  # one weight per token position
    assert rows[("mlp_relu", 0.05)]["params"] == 12 * 512 + 512 * 100
    assert rows[("attention_softmax", 0.05)]["params"] == 4 * (12 * 12 + 12 * 100)
    # the classes are learnable: the linear head on random-ViT features beats chance (1/10) clearly
    assert rows[("linear", 0.05)]["top1"] >= 0.3
    assert main(["report", "--data-root", str(root)]) == 2  # --out elsewhere: none under the root
    assert "no results under" in capsys.readouterr().err
    assert main(["report", str(res_path)]) == 0
    table = capsys.readouterr().out
    for h in own:
        assert h in table
    assert "rel gap" in table
    assert main(["report", str(res_path), "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| head | beta | top-1 |" in md and md.count("| linear |") == 2
    # train loaded the caches written by extract (nothing new under the cache folder)
    assert len(list(cmod.cache_dir(root).iterdir())) == 2
    assert main(["report", "--list-heads"]) == 0
    listing = capsys.readouterr().out
    assert all(h in listing for h in hmod.HEADS)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", str(bad)]) == 2
    assert "not a cvxattn CIFAR-100 results file" in capsys.readouterr().err


def test_cli_on_standin_default_results_location(tmp_path, capsys):
    args = ["--data-root", str(tmp_path), "--backbone", SMALL, "--no-pretrained", "--subset", "40",
            "--test-subset", "20", "--no-download", "--no-progress", "--threads", "1", "--batch-size", "20"]
    with pytest.warns(cifar.DataUnavailableWarning):
        assert main(["train", *args, "--heads", "linear", "--reduce-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC STAND-IN" in out and "results written to" in out
    assert main(["report", "--data-root", str(tmp_path)]) == 0
    assert "SYNTHETIC STAND-IN (not CIFAR-100)" in capsys.readouterr().out


def test_module_entry_point_runs_as_a_script():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cvxattn_lib.cifar", "report", "--list-heads"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "attention_softmax" in out.stdout and "linear" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "cvxattn_lib.cifar", "train", "--heads", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown head(s) 'nope'" in bad.stderr
