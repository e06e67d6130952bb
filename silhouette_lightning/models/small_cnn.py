"""A small VGG-style CNN for 8x8 to 32x32 images (digits, CIFAR), fast on a laptop CPU."""

from __future__ import annotations

from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models.backbone import Backbone


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Backbone):
    """Three stages of two 3x3 conv layers (``width``, ``2*width``, ``4*width`` channels).

    The first two stages halve the resolution, the last keeps it, then global average pooling: an 8x8
    input still ends at 2x2 before pooling, a 32x32 input at 8x8. ``num_features = 4 * width``.

    Args:
        width: channels of the first stage.
        in_channels: image channels (the data module always yields 3).
        dropout: dropout on the pooled features (0 disables it).
    """

    def __init__(self, width: int = 32, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"SmallCNN width must be >= 1, got {width}.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"SmallCNN dropout must be in [0, 1), got {dropout}.")
        self.features = nn.Sequential(
            _conv_block(in_channels, width),
            nn.MaxPool2d(2),
            _conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.num_features = 4 * width

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)
