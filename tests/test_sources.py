"""Other data and backbones through the CIFAR pipeline, offline, on data the tests write themselves:
an ImageFolder tree of PNG/JPEG files (Pillow) and a CIFAR ResNet with random weights saved as
safetensors (and as a DataParallel-style torch checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvxattn_lib.cifar import heads as hmod
from cvxattn_lib.cifar import resnet as rmod
from cvxattn_lib.cifar.cli import format_table, load_results, main
from cvxattn_lib.cifar.names import parse_backbone, parse_data
from cvxattn_lib.cifar.sources import load_image_folder

CLASSES = ("cat", "dog", "frog")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def write_image_folder(root, per_class=(6, 3), size=32, seed=0, ext=(".png", ".jpg")):
    """``root/{train,test}/<class>/i.png|jpg``: class k is a colour (k-th channel bright) plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for k, c in enumerate(CLASSES):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, size=(size, size, 3))
                img[..., k] += 150
                Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:03d}{ext[i % len(ext)]}")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "tinyset")


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = rmod.resnet("resnet20")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that loading them matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model, rmod.save_resnet_weights(model, tmp_path / "resnet20.safetensors")


# --- the image-folder source --------------------------------------------------------------------------

def test_image_folder_reads_classes_labels_in_interleaved_order(folder):
    tr = load_image_folder(folder, "train")
    assert tr.class_names == CLASSES and tr.n_classes == 3 and tr.dataset == "tinyset"
    assert tr.images.shape == (18, 3, 32, 32) and tr.images.dtype == np.uint8
    assert tr.labels.tolist() == [0, 1, 2] * 6  # class by class in turn: any first n is balanced
    # label k is the class whose channel k is bright (the pixels read back are the ones written)
    assert all(np.argmax(tr.images[i].mean((1, 2))) == tr.labels[i] for i in range(len(tr)))
    te = load_image_folder(folder, "test", n=4, name="other")
    assert len(te) == 4 and te.labels.tolist() == [0, 1, 2, 0] and te.dataset == "other"


def test_image_folder_fingerprint_follows_the_bytes(folder):
    a = load_image_folder(folder, "train").fingerprint
    assert a == load_image_folder(folder, "train").fingerprint
    assert load_image_folder(folder, "train", n=6).fingerprint != a
    (folder / "train" / "dog" / "000.png").write_bytes((folder / "train" / "cat" / "000.png").read_bytes())
    assert load_image_folder(folder, "train").fingerprint != a


def test_image_folder_bad_layouts_are_named(tmp_path, folder):
    with pytest.raises(ValueError, match="must hold train/ and test/"):
        load_image_folder(folder / "train", "train")
    (folder / "test" / "horse").mkdir()
    with pytest.raises(ValueError, match="horse"):
        load_image_folder(folder, "test")
    mixed = write_image_folder(tmp_path / "mixed", size=32)
    from PIL import Image

    Image.new("RGB", (20, 20)).save(mixed / "train" / "cat" / "999.png")
    with pytest.raises(Exception, match="image size"):
        load_image_folder(mixed, "train")
    assert load_image_folder(mixed, "train", image_size=16).images.shape[2:] == (16, 16)
    with pytest.raises(ValueError, match="--data must be"):
        parse_data("folder:x")


# --- the CIFAR ResNet ---------------------------------------------------------------------------------

def test_resnet_keys_follow_the_cifar_resnet_layout():
    keys = list(rmod.resnet("resnet20").state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer1.0.conv1.weight" in keys and "layer3.2.bn2.running_var" in keys
    assert "layer3.3.conv1.weight" not in keys and keys[-2:] == ["linear.weight", "linear.bias"]
    assert not any("shortcut" in k for k in keys)  # option A: no parameters
    # weights: 3 stages of n blocks; 0.27 M parameters for ResNet-20, 0.86 M for ResNet-56
    for arch, n_params in (("resnet20", 269_722), ("resnet56", 853_018)):
        assert sum(p.numel() for p in rmod.resnet(arch).parameters()) == n_params


def test_weights_round_trip_through_safetensors_and_a_dataparallel_checkpoint(tmp_path, weights):
    model, path = weights
    back, sha = rmod.build_resnet("resnet20", path)
    assert sha == rmod.file_sha256(path)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    ckpt = tmp_path / "resnet20.th"  # as the public checkpoints are saved: DataParallel + state_dict
    torch.save({"epoch": 1, "best_prec1": 0.5,
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "legacy.th", _use_new_zipfile_serialization=False)  # the pre-1.6 format
    for name in ("resnet20.th", "legacy.th"):
        back2, _ = rmod.build_resnet("resnet20", tmp_path / name)
        for k, v in model.state_dict().items():
            assert torch.equal(back2.state_dict()[k], v), (name, k)
    # a pickle that asks for anything beyond tensors and plain containers is refused, not run
    torch.save({"state_dict": model.state_dict(), "x": np.float64(1.0)}, tmp_path / "numpy.th")
    with pytest.raises(ValueError, match="tensors-only torch checkpoint"):
        rmod.build_resnet("resnet20", tmp_path / "numpy.th")
    with pytest.raises(ValueError, match="do not fit resnet32"):
        rmod.build_resnet("resnet32", path)
    # torch < 0.4.1 checkpoints have no num_batches_tracked; later model files say compressible_conv1
    old = {f"module.{k}".replace("conv", "compressible_conv").replace("linear", "compressible_linear"): v
           for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": old}, tmp_path / "old.th")
    back4, _ = rmod.build_resnet("resnet20", tmp_path / "old.th")
    for k, v in model.state_dict().items():
        assert torch.equal(back4.state_dict()[k], v if "num_batches" not in k else torch.tensor(0)), k
    sha = rmod.convert_to_safetensors(ckpt, tmp_path / "converted.safetensors", "resnet20")
    back3, sha3 = rmod.build_resnet("resnet20", tmp_path / "converted.safetensors")
    assert sha3 == sha and all(torch.equal(back3.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("stage,shape", [("layer1", (16, 32, 32)), ("layer2", (32, 16, 16)),
                                         ("layer3", (64, 8, 8))])
def test_stage_tokens_are_the_feature_map_reshaped(weights, stage, shape):
    _, path = weights
    bb = rmod.ResNetBackbone(f"resnet20:{path}:{stage}", device="cpu")
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    fmap = bb.feature_map(x)
    assert fmap.shape == (2, *shape)
    tok = bb.tokens(x)
    c, h, w = shape
    assert tok.shape == (2, h * w, c) and bb.token_shape() == (h * w, c)
    for t, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (h - 1, w - 1)]):  # token h*W + w = fmap[:, :, h, w]
        assert torch.equal(tok[:, i * w + j], fmap[:, :, i, j]), t
    assert torch.equal(tok, fmap.permute(0, 2, 3, 1).reshape(2, h * w, c))
    assert bb.pretrained and bb.name.startswith(f"resnet20-{stage}-")


def test_backbone_spec_parsing():
    assert parse_backbone("resnet20") == ("resnet20", None, "layer3")
    assert parse_backbone("resnet32:layer1") == ("resnet32", None, "layer1")
    assert parse_backbone("resnet20:w/a.safetensors:layer2") == ("resnet20", "w/a.safetensors", "layer2")
    assert parse_backbone("resnet20:C:/w.safetensors") == ("resnet20", "C:/w.safetensors", "layer3")
    with pytest.raises(ValueError, match="layer4"):
        parse_backbone("resnet20:w.safetensors:layer4")


# --- end to end ---------------------------------------------------------------------------------------

def test_imagefolder_and_resnet_through_cache_heads_results_and_table(tmp_path, folder, weights, capsys):
    _, path = weights
    root = tmp_path / "root"
    root.mkdir()
    common = ["--data-root", str(root), "--data", f"imagefolder:{folder}",
              "--backbone", f"resnet20:{path}:layer3", "--batch-size", "8", "--no-progress", "--threads", "1"]
    heads = ["linear"] + [h for h in ("mlp_gated_relu",) if h in hmod.available_heads()]
    assert main(["train", *common, "--heads", ",".join(heads), "--betas", "0.1", "--reduce-dim", "4",
                 "--reduce-tokens", "4", "--solver-option", "tol=1e-6"]) == 0
    out = capsys.readouterr().out
    assert "tinyset (image folder, 3 classes)" in out and "CIFAR-100" not in out
    res_path = next((root / "results").glob("*.json"))
    assert res_path.name.startswith("tinyset-resnet20-layer3-")
    res = load_results(res_path)
    d = res["data"]
    assert d["dataset"] == "tinyset" and d["classes"] == 3 and d["class_names"] == list(CLASSES)
    assert d["source"] == "imagefolder" and d["n_train"] == 18 and d["n_test"] == 9
    assert res["backbone"]["tokens"] == 64 and res["backbone"]["features"] == 64
    assert "tinyset-c3" in d["train_cache"]
    assert (root / "cache" / "tinyset" / d["train_cache"] / "features.npy").is_file()
    rows = {r["head"]: r for r in res["rows"]}
    assert list(rows) == heads
    for r in rows.values():
        assert r["status"] == "ok" and r["classes"] == 3
    assert rows["linear"]["params"] == 4 * 3  # built for 3 classes, not 100
    assert "tinyset (image folder, 3 classes)" in format_table(res)
    # the cache key follows the data set's name, class count and content
    assert main(["extract", *common[:4], "--data-name", "renamed", *common[4:]]) == 0
    assert (root / "cache" / "renamed").is_dir()
    assert main(["train", *common, "--data-name", "cifar100"]) == 2
    assert "reserved" in capsys.readouterr().err


def test_bad_data_and_backbone_options_fail_before_work(tmp_path, capsys):
    assert main(["extract", "--data-root", str(tmp_path), "--data", f"imagefolder:{tmp_path / 'no'}"]) == 2
    assert "not an existing folder" in capsys.readouterr().err
    assert main(["extract", "--data-root", str(tmp_path), "--backbone", "resnet20:nofile.safetensors"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["extract", "--data-root", str(tmp_path), "--image-size", "32"]) == 2
    assert "imagefolder" in capsys.readouterr().err
    (tmp_path / "imgs").mkdir()
    assert main(["extract", "--data-root", str(tmp_path), "--data", f"imagefolder:{tmp_path / 'imgs'}",
                 "--manifest", str(tmp_path / "m.json")]) == 2
    assert "--manifest" in capsys.readouterr().err


def test_convex_head_built_for_the_data_sets_class_count():
    """Labels 0..1 of a 3-class data set: the linear head and the convex heads have 3 logits."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4, 3))
    y = np.arange(12) % 2
    r = hmod.train_head("linear", X, y, X[:6], y[:6], 0.5, device="cpu", progress=False, classes=3)
    assert r.classes == 3 and r.params == 3 * 3
    if "mlp_gated_relu" in hmod.available_heads():
        c = hmod.train_head("mlp_gated_relu", X, y, X[:6], y[:6], 0.5, device="cpu", progress=False,
                            classes=3, solver_options={"n_gates": 2, "tol": 1e-6})
        assert c.classes == 3 and 0 <= c.top1 <= c.top5 <= 1


def test_targets_take_the_data_sets_class_count():
    from cvxattn_lib.validation import targets, token_targets

    y = np.array([0, 1, 1, 0])
    assert targets(y, 4, "cross_entropy")[1] == 2  # without it: max + 1
    Y, c = targets(y, 4, "cross_entropy", classes=3)
    assert c == 3 and Y.tolist() == [0, 1, 1, 0]
    assert token_targets(y, 4, 5, "cross_entropy", classes=10)[1] == 10
    with pytest.raises(ValueError, match="classes=2"):
        targets(np.array([0, 2]), 2, "cross_entropy", classes=2)


@pytest.mark.slow
def test_notebook_path_on_an_image_folder_and_a_resnet_stage(tmp_path, folder, weights):
    """What notebook 05 calls (prepare_features, small_features, sweep, tables, token-group plots)
    on an image folder and ResNet-20's layer2: 16 x 16 tokens drawn over the 32 x 32 image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvxattn_lib.cifar import explore
    from cvxattn_lib.cifar.cli import prepare_features

    _, path = weights
    prepared = prepare_features(tmp_path, f"resnet20:{path}:layer2", device="cpu", n_train=12, n_test=6,
                                batch_size=6, progress=False, verbose=False, data=f"imagefolder:{folder}")
    assert prepared["dataset"] == "tinyset" and prepared["classes"] == 3
    assert prepared["caches"]["train"].features.shape == (12, 256, 32)
    feats = explore.small_features(prepared, dim=4, tokens=16, device="cpu")
    assert feats["train"].shape == (12, 16, 4) and feats["test_grid"].shape == (6, 256, 4)
    results, models = explore.sweep(prepared, feats, ["linear", "attention_softmax"], [0.1], device="cpu",
                                    progress=False, verbose=False, epochs=2, batch_size=6)
    assert results["data"]["classes"] == 3 and all(r["classes"] == 3 for r in results["rows"])
    assert "tinyset (image folder, 3 classes)" in format_table(results)
    fig = explore.plot_sweep(results, beta=0.1)
    assert fig.get_suptitle().startswith("tinyset (image folder, 3 classes), 12 train / 6 test")
    plt.close(fig)
    groups = explore.image_groups(explore.group_models(models, 0.1), feats["test_grid"], 0, K=3)
    assert groups["attention_softmax"].shape == (256,)
    fig = explore.plot_token_groups(prepared["splits"]["test"].images[0], groups)
    assert "16x16 grid" in fig.axes[1].get_title()
    plt.close(fig)


def test_any_local_module_with_a_feature_map_is_a_backbone(tmp_path, folder):
    """A TokenGridBackbone around a random conv (stride 4: 8 x 8 positions of 5 channels) goes
    through the cache and the heads; its tokens are its map reshaped; other weights, other cache."""
    from cvxattn_lib.cifar.cli import prepare_features, run_heads
    from cvxattn_lib.cifar.grid import TokenGridBackbone

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 4, stride=4), torch.nn.ReLU())
    bb = TokenGridBackbone(conv, "tinyconv", input_size=32, device="cpu")
    x = torch.from_numpy(load_image_folder(folder, "test").images[:2])
    fmap = bb.feature_map(x)
    assert fmap.shape == (2, 5, 8, 8) and bb.token_shape() == (64, 5)
    assert torch.equal(bb.tokens(x), fmap.permute(0, 2, 3, 1).reshape(2, 64, 5))
    prepared = prepare_features(tmp_path, bb, n_train=9, n_test=6, batch_size=4, progress=False,
                                verbose=False, data=f"imagefolder:{folder}")
    assert prepared["caches"]["train"].features.shape == (9, 64, 5)
    res = run_heads(prepared, ["linear"], [0.5], device="cpu", progress=False, verbose=False)
    assert res["data"]["classes"] == 3 and res["rows"][0]["classes"] == 3 and res["rows"][0]["params"] == 15
    with torch.no_grad():
        conv[0].bias.add_(1.0)
    other = TokenGridBackbone(conv, "tinyconv", input_size=32, device="cpu")
    assert other.transform != bb.transform
    with pytest.raises(TypeError, match="lacks"):
        prepare_features(tmp_path, object(), data=f"imagefolder:{folder}", verbose=False)


def test_write_image_folder_round_trips_pixels_and_labels(tmp_path, folder):
    from cvxattn_lib.cifar.sources import write_image_folder

    splits = {s: load_image_folder(folder, s) for s in ("train", "test")}
    out = write_image_folder(tmp_path / "copy", splits)
    for s, data in splits.items():
        back = load_image_folder(out, s)
        assert back.class_names == data.class_names
        order = np.lexsort((np.arange(len(data)), data.labels))  # per class in the written order
        back_order = np.lexsort((np.arange(len(back)), back.labels))
        assert np.array_equal(back.labels[back_order], data.labels[order])
        assert np.array_equal(back.images[back_order], data.images[order])  # PNG: lossless
