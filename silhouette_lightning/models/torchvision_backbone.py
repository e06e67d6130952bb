"""Any torchvision classification model by name, without its classifier: random, pretrained or from a file."""

from __future__ import annotations

import warnings
from pathlib import Path

import torchvision
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models.backbone import Backbone
from silhouette_lightning.models.local_checkpoint import load_checkpoint_into
from silhouette_lightning.models.pretrained_weights import build_pretrained, resolve_weights

# Attribute that holds the final classifier in torchvision's classification models.
_CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def _classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


class TorchvisionBackbone(Backbone):
    """A torchvision classification model (``resnet18``, ``resnet50``, ``efficientnet_b0``, ...) as backbone.

    Its last ``nn.Linear`` classifier is replaced by ``nn.Identity``, so it returns the pooled features.

    Pretrained weights come either from torchvision by name (``weights``) or from a local file
    (``checkpoint``), not both. Normalisation: ImageNet weights expect images normalised with the ImageNet
    mean/std. The data module does so for ``imagefolder`` and the fine-grained torchvision sets (Flowers,
    Cars, Aircraft, DTD, Food, Caltech, Pets); CIFAR-10/100, digits and synthetic data are normalised with
    their own statistics, which the network sees as a small shift of its input distribution.

    Args:
        name: a name from ``torchvision.models.list_models(module=torchvision.models)``.
        small_images: replace the ImageNet stem (7x7 stride-2 conv + max-pool, which shrinks a 32x32
            image to 8x8 before the first block) by a 3x3 stride-1 conv without pooling, the usual
            CIFAR-style stem. Only for ResNet-like models (``conv1`` + ``maxpool``). The new conv is
            randomly initialised: with ``weights`` the pretrained 7x7 conv is discarded (a warning says so),
            and a ``checkpoint`` must come from a model built with the same setting.
        weights: torchvision weights name (e.g. ``"DEFAULT"``, ``"IMAGENET1K_V1"``; the valid ones are
            ``torchvision.models.get_model_weights(name)``), or None for random initialisation. torchvision
            downloads the file on first use into ``torch.hub.get_dir()/checkpoints`` (``TORCH_HOME`` moves
            it); without internet access that is a :class:`ConfigError` saying where to put the file, or to
            use ``checkpoint`` instead.
        checkpoint: a local file with the weights: a torchvision-style state dict (``.pth``), a Lightning
            ``.ckpt`` of :class:`~silhouette_lightning.module.EmbeddingModule` (its ``backbone.model.*``
            weights), or a dict with a ``state_dict`` / ``model`` entry. The classifier's keys are ignored;
            any other difference is a :class:`ConfigError` (see
            :mod:`silhouette_lightning.models.local_checkpoint`).
        freeze: keep the weights fixed: parameters get ``requires_grad=False`` (the optimizer leaves them
            out) and the backbone stays in eval mode even while the rest of the model trains, so BatchNorm
            uses and keeps the pretrained running statistics and dropout is off. For the introspection
            baseline (``configs/method/introspection.yaml``) and linear probing. Lightning warns at the start
            of ``fit`` that modules are in eval mode: that is this, on purpose.
    """

    def __init__(
        self,
        name: str = "resnet18",
        small_images: bool = False,
        weights: str | None = None,
        checkpoint: str | Path | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        available = _classification_models()
        if name not in available:
            raise ConfigError(f"Unknown torchvision model {name!r}. Choose one of: {', '.join(available)}.")
        if weights is not None and checkpoint is not None:
            raise ConfigError(
                f"TorchvisionBackbone got both weights={weights!r} and checkpoint={str(checkpoint)!r}: the "
                "weights come from one of them. Set the other to null."
            )
        if weights is not None:
            resolved = resolve_weights(name, weights)  # before the stem check: a bad name is the first error
            if small_images and freeze:
                raise ConfigError(
                    "small_images replaces the pretrained 7x7 conv1 by a new, randomly initialised 3x3 conv, "
                    "and freeze would keep it random: the features would be meaningless. For a frozen "
                    "pretrained backbone set small_images: false (and a larger data.image_size, e.g. 224)."
                )
            model = build_pretrained(name, resolved)
        else:
            model = torchvision.models.get_model(name)
        self.num_features, removed_prefix = _strip_classifier(model, name)
        if small_images:
            if weights is not None:
                warnings.warn(
                    f"small_images replaces the pretrained 7x7 conv1 of {name!r} by a randomly initialised "
                    "3x3 conv; the rest of the network keeps the pretrained weights.",
                    UserWarning,
                    stacklevel=2,
                )
            _use_small_image_stem(model, name)
        if checkpoint is not None:
            load_checkpoint_into(model, checkpoint, removed_prefix, hint=_stem_hint(small_images))
        elif weights is None and freeze:
            warnings.warn(
                f"TorchvisionBackbone({name!r}, freeze=True) has neither weights nor checkpoint: its "
                "features are those of a frozen random initialisation.",
                UserWarning,
                stacklevel=2,
            )
        self.model = model
        self.frozen = freeze
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> TorchvisionBackbone:
        # Frozen: always eval, whatever the trainer switches the surrounding module to, so BatchNorm never
        # updates (or normalises with) batch statistics and the features stay the pretrained model's.
        return super().train(mode and not self.frozen)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


def _strip_classifier(model: nn.Module, name: str) -> tuple[int, str]:
    """Replace the model's last Linear layer by Identity; return that layer's input width and its
    state-dict prefix (``"fc."``, ``"classifier.3."``), whose keys a checkpoint file may still hold."""
    for attribute in _CLASSIFIER_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return head.in_features, f"{attribute}."
        linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            last_name, last = linears[-1]
            parent = head.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else head
            setattr(parent, last_name.rpartition(".")[2], nn.Identity())
            return last.in_features, f"{attribute}.{last_name}."
    raise ConfigError(f"Cannot find the classifier of torchvision model {name!r} to use it as a backbone.")


def _use_small_image_stem(model: nn.Module, name: str) -> None:
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ConfigError(
            f"small_images is only supported for ResNet-like models (with conv1 and maxpool), not {name!r}."
        )
    model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _stem_hint(small_images: bool) -> str:
    if small_images:
        return (
            "small_images: true builds a 3x3 conv1 (CIFAR stem): a checkpoint with the 7x7 ImageNet conv1 "
            "(as torchvision publishes them) needs small_images: false."
        )
    return (
        "small_images: false builds the 7x7 ImageNet conv1: a checkpoint with a 3x3 conv1 needs "
        "small_images: true."
    )
