"""Backbones (images -> pooled features) and heads."""

from silhouette_lightning.models.backbone import Backbone
from silhouette_lightning.models.projection_head import ProjectionHead
from silhouette_lightning.models.small_cnn import SmallCNN
from silhouette_lightning.models.torchvision_backbone import TorchvisionBackbone

__all__ = ["Backbone", "ProjectionHead", "SmallCNN", "TorchvisionBackbone"]
