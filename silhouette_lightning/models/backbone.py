"""The backbone contract: images ``[B, 3, H, W]`` in, pooled features ``[B, num_features]`` out."""

from torch import nn


class Backbone(nn.Module):
    """Base class of feature extractors.

    Subclasses set ``num_features`` (the width of the pooled output) in ``__init__``; the module sizes the
    projection head and the classifier from it, so any backbone can be swapped in through the config's
    ``model.backbone.class_path``.
    """

    num_features: int
