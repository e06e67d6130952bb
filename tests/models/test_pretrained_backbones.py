"""Pretrained TorchvisionBackbone: local checkpoint files, torchvision weights by name (never downloaded
here: the download is mocked), and freeze."""

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models import SmallCNN, TorchvisionBackbone
from silhouette_lightning.models.pretrained_weights import cached_weights_file, resolve_weights
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm


def _seeded(name="resnet18", seed=0, small_images=False, **kwargs):
    """A torchvision model with random weights *and* random BatchNorm statistics (so that a file that
    forgot the buffers, or a backbone that updates them, would show)."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, **kwargs)
    if small_images:
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _features_of(model, images):
    """The reference features: the same model with its classifier replaced by an identity."""
    if hasattr(model, "fc"):
        model.fc = nn.Identity()
    else:
        model.classifier[-1] = nn.Identity()
    with torch.no_grad():
        return model.eval()(images)


def _images(size=32, n=4):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ local checkpoint files
def test_torchvision_state_dict_file_gives_the_models_features(tmp_path):
    # As torchvision publishes them: conv1.weight ... fc.weight; the classifier (here 10 classes, not the
    # 1000 of the backbone's own) is ignored.
    reference = _seeded(num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = TorchvisionBackbone("resnet18", checkpoint=str(path)).eval()
    with torch.no_grad():
        features = backbone(_images())
    assert torch.equal(features, _features_of(reference, _images()))


def test_classifier_with_hidden_layers_keeps_them_and_drops_only_the_last_linear(tmp_path):
    # mobilenet_v3_small: classifier = Linear(576, 1024), Hardswish, Dropout, Linear(1024, classes); the
    # first Linear belongs to the backbone (num_features = 1024), only classifier.3 is dropped.
    reference = _seeded("mobilenet_v3_small", num_classes=7)
    path = tmp_path / "mobilenet.pth"
    torch.save(reference.state_dict(), path)
    backbone = TorchvisionBackbone("mobilenet_v3_small", checkpoint=path).eval()
    with torch.no_grad():
        features = backbone(_images())
    assert features.shape == (4, 1024)
    assert torch.equal(features, _features_of(reference, _images()))


def _lightning_checkpoint(backbone):
    module = EmbeddingModule(
        backbone=backbone, num_classes=3, losses=[CrossEntropyTerm(), SoftSilhouetteTerm()]
    )
    # What Trainer.save_checkpoint writes, with the entries that matter here.
    return {"epoch": 4, "global_step": 40, "state_dict": module.state_dict(), "hyper_parameters": {"lr": 0.1}}


@pytest.mark.parametrize("layout", ["lightning_ckpt", "model_entry_with_ddp_prefix", "saved_backbone"])
def test_checkpoint_layouts_load_the_backbone_weights(tmp_path, layout):
    torch.manual_seed(3)
    trained = TorchvisionBackbone("resnet18", small_images=True)
    for module in trained.modules():  # non-default statistics, so that the buffers must be loaded too
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    if layout == "lightning_ckpt":  # keys "backbone.model.conv1.weight", plus head/classifier/losses
        content = _lightning_checkpoint(trained)
    elif layout == "model_entry_with_ddp_prefix":  # torchvision's reference scripts, DDP-wrapped
        content = {"model": {f"module.{k}": v for k, v in trained.model.state_dict().items()}, "epoch": 1}
    else:  # torch.save(backbone.state_dict()): keys "model.conv1.weight"
        content = trained.state_dict()
    path = tmp_path / "run.ckpt"
    torch.save(content, path)

    loaded = TorchvisionBackbone("resnet18", small_images=True, checkpoint=path).eval()
    images = _images(size=8)
    with torch.no_grad():
        assert torch.equal(loaded(images), trained.eval()(images))


def _resnet18_file(tmp_path, edit=None):
    state = _seeded().state_dict()
    if edit is not None:
        edit(state)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("layer4.1.bn2.weight"), "1 missing \\(layer4.1.bn2.weight\\)"),
        (
            lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}),
            "1 unexpected \\(layer5.0.conv1.weight\\)",
        ),
    ],
    ids=["missing", "unexpected"],
)
def test_missing_or_unexpected_keys_are_listed(tmp_path, edit, message):
    path = _resnet18_file(tmp_path, edit)
    with pytest.raises(ConfigError, match=message) as info:
        TorchvisionBackbone("resnet18", checkpoint=path)
    assert str(path) in str(info.value)


def test_imagenet_stem_file_with_small_images_is_a_shape_error_not_a_torch_trace(tmp_path):
    path = _resnet18_file(tmp_path)  # 7x7 conv1, as torchvision publishes ResNets
    with pytest.raises(ConfigError) as info:
        TorchvisionBackbone("resnet18", small_images=True, checkpoint=path)
    message = str(info.value)
    assert str(path) in message
    assert "conv1.weight: (64, 3, 7, 7) in the file, (64, 3, 3, 3) in the model" in message
    assert "needs small_images: false" in message


def test_file_of_another_architecture_is_named_as_such(tmp_path):
    path = tmp_path / "smallcnn.ckpt"
    torch.save(_lightning_checkpoint(SmallCNN(width=4)), path)  # keys backbone.features.*
    with pytest.raises(ConfigError, match="has no weights of this model.*backbone.features") as info:
        TorchvisionBackbone("resnet18", checkpoint=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "does not exist"),
        (lambda p: p.write_text("not a checkpoint"), "Cannot read the backbone checkpoint"),
        # A whole pickled module needs arbitrary classes to load: refused (weights_only=True).
        (lambda p: torch.save(nn.Linear(2, 2), p), "torch.save\\(model.state_dict\\(\\), path\\)"),
        (lambda p: torch.save({"epoch": 3, "note": "no weights"}, p), "holds no state dict"),
    ],
    ids=["missing", "not_a_torch_file", "pickled_module", "no_tensors"],
)
def test_bad_files_are_a_config_error_naming_the_path(tmp_path, write, message):
    path = tmp_path / "bad.pth"
    if write is not None:
        write(path)
    with pytest.raises(ConfigError, match=message) as info:
        TorchvisionBackbone("resnet18", checkpoint=path)
    assert str(path) in str(info.value)


def test_weights_and_checkpoint_together_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="both weights='DEFAULT' and checkpoint"):
        TorchvisionBackbone("resnet18", weights="DEFAULT", checkpoint=tmp_path / "x.pth")


# ------------------------------------------------------------------ torchvision weights by name
def test_weights_names_resolve_without_download():
    enum = torchvision.models.ResNet50_Weights
    assert resolve_weights("resnet50", "DEFAULT") is enum.IMAGENET1K_V2
    assert resolve_weights("resnet50", "IMAGENET1K_V1") is enum.IMAGENET1K_V1
    assert resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1") is enum.IMAGENET1K_V1


def test_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        TorchvisionBackbone("resnet50", weights="IMAGENET22K")
    message = str(info.value)
    assert "'IMAGENET22K'" in message and "'resnet50'" in message
    assert "DEFAULT (= IMAGENET1K_V2), IMAGENET1K_V1, IMAGENET1K_V2" in message


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """An empty torchvision cache, so that building with weights must "download"."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_offline_download_failure_says_where_the_cache_is_and_how_to_use_a_local_file(
    empty_torch_home, monkeypatch
):
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as info:
        TorchvisionBackbone("resnet18", weights="IMAGENET1K_V1")
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert calls == [url]
    message = str(info.value)
    assert "Could not download" in message and url in message
    assert str(empty_torch_home) in message and "torch.hub.get_dir()" in message
    assert str(empty_torch_home / "resnet18-f37072fd.pth") in message
    assert "checkpoint: /path/file.pth" in message


def test_corrupt_cached_weights_file_says_to_delete_it(empty_torch_home):
    cached = cached_weights_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert cached == str(empty_torch_home / "resnet18-f37072fd.pth")
    empty_torch_home.mkdir(parents=True)
    (empty_torch_home / "resnet18-f37072fd.pth").write_bytes(b"half a file")
    with pytest.raises(ConfigError, match="is a partial or corrupt download, delete it"):
        TorchvisionBackbone("resnet18", weights="DEFAULT")


def test_downloaded_weights_are_loaded(empty_torch_home, monkeypatch):
    # The "server" hands out a seeded model's state dict; the backbone must compute that model's features.
    reference = _seeded(seed=5)
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, *a, **k: torch.save(reference.state_dict(), dst)
    )
    backbone = TorchvisionBackbone("resnet18", weights="DEFAULT").eval()
    assert (empty_torch_home / "resnet18-f37072fd.pth").is_file()  # cached for the next run
    with torch.no_grad():
        assert torch.equal(backbone(_images()), _features_of(reference, _images()))

    with pytest.warns(UserWarning, match="replaces the pretrained 7x7 conv1"):
        TorchvisionBackbone("resnet18", weights="DEFAULT", small_images=True)


def test_frozen_pretrained_backbone_with_a_new_random_stem_is_rejected():
    with pytest.raises(ConfigError, match="freeze would keep it random"):
        TorchvisionBackbone("resnet18", weights="DEFAULT", small_images=True, freeze=True)


# ------------------------------------------------------------------ freeze
def test_frozen_backbone_has_no_gradients_and_keeps_its_batchnorm_statistics(tmp_path):
    path = tmp_path / "resnet18.pth"
    reference = _seeded(small_images=True)
    torch.save(reference.state_dict(), path)
    backbone = TorchvisionBackbone("resnet18", small_images=True, checkpoint=path, freeze=True)
    assert not any(p.requires_grad for p in backbone.parameters())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}

    backbone.train()  # what the trainer does every epoch
    assert not any(m.training for m in backbone.modules())
    images = _images(size=8, n=6).requires_grad_(True)  # even so, nothing of the backbone gets a gradient
    features = backbone(images)
    features.sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # running stats, too
    assert torch.equal(features.detach(), _features_of(reference, images.detach()))


def test_frozen_backbone_inside_the_module_stays_out_of_training(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(_seeded(small_images=True).state_dict(), path)
    backbone = TorchvisionBackbone("resnet18", small_images=True, checkpoint=path, freeze=True)
    module = EmbeddingModule(
        backbone=backbone, num_classes=3, losses=[CrossEntropyTerm(), SoftSilhouetteTerm()], embedding_dim=4
    )
    module.train()
    assert not backbone.training and module.head.training
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    images, labels = _images(size=8, n=6), torch.arange(6) % 3
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer to log to here
        module.training_step((images, labels), batch_idx=1).backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    optimized = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert optimized == {id(p) for p in [*module.head.parameters(), *module.classifier.parameters()]}


def test_freezing_a_random_initialisation_warns():
    with pytest.warns(UserWarning, match="frozen random initialisation"):
        TorchvisionBackbone("resnet18", freeze=True)
