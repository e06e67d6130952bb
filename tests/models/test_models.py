import pytest
import torch

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models import ProjectionHead, SmallCNN, TorchvisionBackbone


@pytest.mark.parametrize("size", [8, 16, 32])
def test_small_cnn_pools_any_small_image_to_num_features(size):
    backbone = SmallCNN(width=8)
    assert backbone(torch.randn(3, 3, size, size)).shape == (3, backbone.num_features) == (3, 32)


@pytest.mark.parametrize(("name", "width"), [("resnet18", 512), ("mobilenet_v3_small", 1024)])
def test_torchvision_backbone_returns_pooled_features(name, width):
    backbone = TorchvisionBackbone(name)
    assert backbone.num_features == width
    assert backbone(torch.randn(2, 3, 64, 64)).shape == (2, width)


def test_small_image_stem_keeps_resolution_of_32px_inputs():
    plain, small = TorchvisionBackbone("resnet18"), TorchvisionBackbone("resnet18", small_images=True)
    assert small.model.conv1.stride == (1, 1)
    assert isinstance(small.model.maxpool, torch.nn.Identity)
    # The first block sees 32x32 instead of 8x8: the feature map entering layer1 is 16x larger.
    x = torch.randn(1, 3, 32, 32)
    stem = lambda m: m.model.maxpool(m.model.relu(m.model.bn1(m.model.conv1(x))))  # noqa: E731
    assert stem(small).shape[-1] == 32 and stem(plain).shape[-1] == 8


def test_unknown_torchvision_model_lists_choices():
    with pytest.raises(ConfigError, match="Unknown torchvision model 'resnet19'.*resnet18"):
        TorchvisionBackbone("resnet19")


def test_small_image_stem_rejected_for_non_resnet():
    with pytest.raises(ConfigError, match="only supported for ResNet-like"):
        TorchvisionBackbone("mobilenet_v3_small", small_images=True)


def test_projection_head_layers_and_output():
    head = ProjectionHead(16, 4, hidden_features=8, num_layers=3)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 8), (8, 8), (8, 4)]
    assert head(torch.randn(5, 16)).shape == (5, 4)
    assert isinstance(ProjectionHead(16, 4, num_layers=1).mlp[0], torch.nn.Linear)
    with pytest.raises(ConfigError, match="embedding_dim"):
        ProjectionHead(16, 0)
