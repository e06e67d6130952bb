"""Any torchvision classification model, by name, with its classifier removed."""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models.backbone import Backbone

# Attribute that holds the final classifier in torchvision's classification models.
_CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def _classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


class TorchvisionBackbone(Backbone):
    """A torchvision classification model (``resnet18``, ``resnet50``, ``efficientnet_b0``, ...) as backbone.

    Its last ``nn.Linear`` classifier is replaced by ``nn.Identity``, so it returns the pooled features.

    Args:
        name: a name from ``torchvision.models.list_models(module=torchvision.models)``.
        small_images: replace the ImageNet stem (7x7 stride-2 conv + max-pool, which shrinks a 32x32
            image to 8x8 before the first block) by a 3x3 stride-1 conv without pooling, the usual
            CIFAR-style stem. Only for ResNet-like models (``conv1`` + ``maxpool``).
        weights: torchvision weights name (e.g. ``"DEFAULT"``, ``"IMAGENET1K_V1"``) or None for random
            initialisation. Weights are downloaded by torchvision if not cached.
    """

    def __init__(
        self, name: str = "resnet18", small_images: bool = False, weights: str | None = None
    ) -> None:
        super().__init__()
        available = _classification_models()
        if name not in available:
            raise ConfigError(f"Unknown torchvision model {name!r}. Choose one of: {', '.join(available)}.")
        model = torchvision.models.get_model(name, weights=weights)
        self.num_features = _strip_classifier(model, name)
        if small_images:
            _use_small_image_stem(model, name)
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


def _strip_classifier(model: nn.Module, name: str) -> int:
    """Replace the model's last Linear layer by Identity; return that layer's input width."""
    for attribute in _CLASSIFIER_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return head.in_features
        linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            last_name, last = linears[-1]
            parent = head.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else head
            setattr(parent, last_name.rpartition(".")[2], nn.Identity())
            return last.in_features
    raise ConfigError(f"Cannot find the classifier of torchvision model {name!r} to use it as a backbone.")


def _use_small_image_stem(model: nn.Module, name: str) -> None:
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ConfigError(
            f"small_images is only supported for ResNet-like models (with conv1 and maxpool), not {name!r}."
        )
    model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
