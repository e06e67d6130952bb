"""The projection head: backbone features -> the embedding the metric-learning losses see."""

from __future__ import annotations

from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError


class ProjectionHead(nn.Module):
    """An MLP ``in_features -> hidden (-> hidden ...) -> out_features``, as in SimCLR/SupCon.

    ``num_layers = 1`` is a single linear map. Hidden layers use BatchNorm and ReLU; the output layer is
    linear, so normalisation (if any) is the loss's choice.
    """

    def __init__(
        self, in_features: int, out_features: int, hidden_features: int | None = None, num_layers: int = 2
    ):
        super().__init__()
        if out_features < 1:
            raise ConfigError(f"embedding_dim must be >= 1, got {out_features}.")
        if num_layers < 1:
            raise ConfigError(f"head_layers must be >= 1, got {num_layers}.")
        hidden = hidden_features or in_features
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)
