"""Any pytorch-metric-learning loss as a term, instead of re-implementing it.

One argument, ``loss``, takes every loss. In a config it is a ``class_path`` with ``init_args``, and the
term builds the loss in :meth:`~MetricLearningTerm.bind`, once the module knows the number of classes
and the width of the output the term reads; losses with class-dependent parameters (proxies, class
weights: ``ProxyAnchorLoss``, ``ProxyNCALoss``, ``NormalizedSoftmaxLoss``, ``ArcFaceLoss``,
``CosFaceLoss``, ``SoftTripleLoss``, ...) receive them as ``num_classes=`` and ``embedding_size=``
(pytorch-metric-learning's own parameter names). This is how LightningCLI's ``OptimizerCallable``
receives the model's parameters: configs never repeat the shapes, and the loss's parameters are
module parameters, so the optimizer trains them and checkpoints hold them::

    model:
      losses:
        - class_path: silhouette_lightning.terms.metric_learning.MetricLearningTerm
          init_args:
            name: triplet
            loss:
              class_path: pytorch_metric_learning.losses.TripletMarginLoss
              init_args: {margin: 0.1}
            miner:
              class_path: pytorch_metric_learning.miners.TripletMarginMiner
              init_args: {margin: 0.1, type_of_triplets: semihard}
        - class_path: silhouette_lightning.terms.metric_learning.MetricLearningTerm
          init_args:
            loss:
              class_path: pytorch_metric_learning.losses.ProxyAnchorLoss
              init_args: {margin: 0.1, alpha: 32}

In Python, ``loss`` may also be a ready instance (``TripletMarginLoss(margin=0.1)``), used as it is.
"""

from __future__ import annotations

import functools
import inspect
from typing import Protocol

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner
from torch import Tensor

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.distances import as_compute_dtype
from silhouette_lightning.terms.base import LossTerm, ViewSelection
from silhouette_lightning.terms.outputs import OutputName

_SHAPE_ARGUMENTS = ("num_classes", "embedding_size")


class MetricLossFactory(Protocol):
    """Builds a pytorch-metric-learning loss once the shapes are known.

    Called with those of the keywords ``num_classes`` and ``embedding_size`` that it accepts (none for
    ``TripletMarginLoss``, both for ``ProxyAnchorLoss``). A loss class, ``functools.partial(
    ProxyAnchorLoss, margin=0.2)``, ``lambda num_classes, embedding_size: ...`` and a config's
    ``class_path``/``init_args`` all qualify. (As a ``Protocol`` with named parameters, jsonargparse
    leaves exactly these two parameters out of the config and keeps every other one configurable.)
    """

    def __call__(self, num_classes: int, embedding_size: int) -> BaseMetricLossFunction: ...


class MetricLearningTerm(LossTerm):
    """A pytorch-metric-learning loss on the selected output, views flattened into the batch.

    The value is ``loss(inputs, labels, indices_tuple=miner(inputs, labels))`` (no miner: all pairs or
    triplets of the batch), computed in float32 with autocast disabled.

    Args:
        loss: a :class:`MetricLossFactory` (a ``class_path`` in configs), built in :meth:`bind`, or a
            ready loss instance.
        weight, input, views: see :class:`LossTerm`.
        name: logging name; default: the loss class's name in lower case (``"tripletmarginloss"``).
        miner: optional pytorch-metric-learning miner (``TripletMarginMiner``, ``MultiSimilarityMiner``,
            ...), run on the same inputs.

    A loss whose shape parameters have other names (``P2SGradLoss(descriptors_dim, num_classes)``) gets
    ``num_classes`` only and its other parameter from ``init_args``. Losses that need reference
    embeddings (``VICRegLoss``) or wrap others (``CrossBatchMemory``, ``SelfSupervisedLoss``) are not
    supported.
    """

    default_name = "metric_learning"

    def __init__(
        self,
        loss: MetricLossFactory | BaseMetricLossFunction,
        weight: float = 1.0,
        input: OutputName = "embeddings",
        views: ViewSelection = "all",
        name: str | None = None,
        miner: BaseMiner | None = None,
    ) -> None:
        built = isinstance(loss, BaseMetricLossFunction)
        if not built and (not callable(loss) or isinstance(loss, torch.nn.Module)):
            raise ConfigError(
                "loss must be a pytorch-metric-learning loss (an instance, or a class/factory that builds "
                f"one), got {loss!r}."
            )
        if miner is not None and not isinstance(miner, BaseMiner):
            raise ConfigError(f"miner must be a pytorch_metric_learning.miners.BaseMiner, got {miner!r}.")
        if name is None:
            name = _loss_name(loss) or self.default_name
        super().__init__(weight=weight, input=input, views=views, name=name)
        self.loss: BaseMetricLossFunction | None = loss if built else None
        self.loss_factory = None if built else loss
        self.miner = miner
        self._bound_shape: tuple[int, int] | None = None

    def bind(self, num_classes: int, input_dim: int) -> None:
        if self.loss_factory is None:
            return  # a ready-made instance: nothing depends on the shapes
        if self._bound_shape is not None:
            if self._bound_shape == (num_classes, input_dim):
                return  # bound again to the same shapes: keep the (possibly trained) parameters
            raise ConfigError(
                f"Loss term {self.name!r} is already bound to (num_classes, embedding_size) = "
                f"{self._bound_shape} and cannot be re-bound to {(num_classes, input_dim)}."
            )
        shapes = {"num_classes": num_classes, "embedding_size": input_dim}
        kwargs = {key: shapes[key] for key in _accepted_shape_arguments(self.loss_factory)}
        try:
            loss = self.loss_factory(**kwargs)
        except TypeError as error:
            raise ConfigError(
                f"Loss term {self.name!r}: could not build {_describe(self.loss_factory)} with "
                f"{kwargs or 'no arguments'} ({error}). The term passes only num_classes and "
                "embedding_size; give the loss's other required parameters in its init_args."
            ) from error
        if not isinstance(loss, BaseMetricLossFunction):
            raise ConfigError(
                f"Loss term {self.name!r}: {_describe(self.loss_factory)} built a {type(loss).__name__}, "
                "not a pytorch-metric-learning loss."
            )
        self.loss = loss
        self._bound_shape = (num_classes, input_dim)

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        if self.loss is None:
            raise RuntimeError(
                f"Loss term {self.name!r} has not built its loss yet: call term.bind(num_classes, "
                "input_dim) first. EmbeddingModule does this in its __init__."
            )
        # float32 with autocast off: the losses' distance matrices and exp() overflow in float16.
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            inputs = as_compute_dtype(inputs)
            indices_tuple = None if self.miner is None else self.miner(inputs, labels)
            return self.loss(inputs, labels, indices_tuple=indices_tuple)

    def extra_repr(self) -> str:
        pending = "" if self.loss is not None else f", loss={_describe(self.loss_factory)} (not built yet)"
        return super().extra_repr() + pending


def _factory_class(factory: object) -> type | None:
    """The class a factory builds, looking through ``functools.partial`` (which is also what
    jsonargparse makes of a ``class_path``: ``partial(instantiator, cls, **init_args)``)."""
    while isinstance(factory, functools.partial):
        classes = [f for f in (factory.func, *factory.args) if inspect.isclass(f)]
        if classes:
            return classes[0]
        factory = factory.func
    return factory if inspect.isclass(factory) else None


def _accepted_shape_arguments(factory: object) -> list[str]:
    """Which of ``num_classes`` / ``embedding_size`` the factory takes by name.

    For a class, the ``__init__`` chain is followed through ``*args``/``**kwargs`` (``CosFaceLoss(*args,
    **kwargs)`` passes them on to ``LargeMarginSoftmaxLoss(num_classes, embedding_size, ...)``); a
    ``**kwargs`` alone does not count, since pytorch-metric-learning's base classes reject unknown names.
    """
    cls = _factory_class(factory)
    if cls is None:
        signatures = [inspect.signature(factory)]
    else:
        signatures = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            signature = inspect.signature(vars(klass)["__init__"])
            signatures.append(signature)
            kinds = {p.kind for p in signature.parameters.values()}
            if not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
                break  # the chain of super().__init__(**kwargs) ends here
    names = {
        name
        for signature in signatures
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return [name for name in _SHAPE_ARGUMENTS if name in names]


def _loss_name(loss_or_factory: object) -> str | None:
    if isinstance(loss_or_factory, BaseMetricLossFunction):
        return type(loss_or_factory).__name__.lower()
    cls = _factory_class(loss_or_factory)
    return cls.__name__.lower() if cls is not None else None


def _describe(factory: object) -> str:
    cls = _factory_class(factory)
    return cls.__name__ if cls is not None else repr(factory)
