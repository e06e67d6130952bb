"""Loss terms: weighted, named pieces of the training objective, chosen by ``class_path`` in configs."""

from silhouette_lightning.terms.base import LossTerm
from silhouette_lightning.terms.cross_entropy import CrossEntropyTerm
from silhouette_lightning.terms.outputs import ModelOutputs
from silhouette_lightning.terms.soft_silhouette import SoftSilhouetteTerm

__all__ = ["CrossEntropyTerm", "LossTerm", "ModelOutputs", "SoftSilhouetteTerm"]
