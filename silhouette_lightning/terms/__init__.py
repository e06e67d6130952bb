"""Loss terms: weighted, named pieces of the training objective, chosen by ``class_path`` in configs."""

from silhouette_lightning.terms.base import LossTerm
from silhouette_lightning.terms.corel import CorelTerm
from silhouette_lightning.terms.cross_entropy import CrossEntropyTerm
from silhouette_lightning.terms.metric_learning import MetricLearningTerm
from silhouette_lightning.terms.outputs import ModelOutputs
from silhouette_lightning.terms.soft_silhouette import SoftSilhouetteTerm
from silhouette_lightning.terms.supcon import SupConTerm

__all__ = [
    "CorelTerm",
    "CrossEntropyTerm",
    "LossTerm",
    "MetricLearningTerm",
    "ModelOutputs",
    "SoftSilhouetteTerm",
    "SupConTerm",
]
