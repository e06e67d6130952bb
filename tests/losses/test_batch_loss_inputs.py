"""Bad inputs and options of every batch loss: one table each, every case with the message it must raise.

:class:`~silhouette_lightning.losses.base.BatchLoss` checks the inputs of every batch loss in its
``forward``, before normalising, so every loss refuses them with the same ``ValueError``; the cases that
only one loss has (SupCon's ``[N, V, D]`` views) are listed under that loss.
"""

import math

import pytest
import torch

from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss
from tests.losses.batches import uneven_batch

LOSSES = {"silhouette": SoftSilhouetteLoss, "supcon": SupConLoss}

# (x [15, 4], y [15]) -> the loss's arguments, and the message (a regex) of the ValueError.
COMMON = {
    "labels-length": (lambda x, y: (x, y[:-1]), r"labels must have shape \[N\] = \[15\].*got \(14,\)"),
    "labels-2d": (lambda x, y: (x, y[:, None]), r"labels must have shape \[N\]"),
    "float-labels": (lambda x, y: (x, y.double()), r"labels must be an integer tensor.*float64"),
    "bool-labels": (lambda x, y: (x, y > 3), r"labels must be an integer tensor.*bool"),
    "integer-embeddings": (lambda x, y: (x.long(), y), r"floating-point tensor, got torch.int64"),
    "refs-without-labels": (lambda x, y: (x, y, x), r"ref_embeddings needs ref_labels"),
    "labels-without-refs": (lambda x, y: (x, y, None, y), r"ref_labels was given without ref_embeddings"),
    "ref-labels-length": (lambda x, y: (x, y, x, y[:3]), r"labels must have shape \[N\].*ref_embeddings"),
    "ref-dimension": (lambda x, y: (x, y, x[:, :2], y), r"ref_embeddings have dimension 2, embeddings 4"),
    "not-a-tensor": (lambda x, y: (x.tolist(), y), r"embeddings and labels must be torch.Tensors"),
    "sparse-embeddings": (lambda x, y: (x.to_sparse(), y), r"embeddings must be a dense tensor.*dense\(\)"),
    "sparse-labels": (lambda x, y: (x, y.to_sparse()), r"labels must be a dense tensor.*labels.to_dense\(\)"),
    "integer-embeddings-hint": (lambda x, y: (x.int(), y), r"got torch.int32; pass embeddings.float\(\)"),
    "zero-dimensional": (lambda x, y: (x[:, :0], y), r"embeddings have dimension D = 0 \(shape \(15, 0\)\)"),
    "labels-on-meta": (
        lambda x, y: (x, y.to("meta")),
        r"labels are on device meta but embeddings on device cpu",
    ),
    "refs-on-meta": (
        lambda x, y: (x, y, x.to("meta"), y.to("meta")),
        r"ref_embeddings are on device meta but embeddings on device cpu",
    ),
}
ONLY = {
    "silhouette": {
        "embeddings-3d": (
            lambda x, y: (x[:, :, None], y),
            r"embeddings must have shape \[N, D\], got \(15, 4,",
        ),
    },
    "supcon": {  # [N, V, D] views are valid SupCon inputs
        "embeddings-1d": (
            lambda x, y: (x[:, 0], y),
            r"embeddings must have shape \[N, D\] or \[N, V, D\], got \(15,\)",
        ),
        "embeddings-4d": (
            lambda x, y: (x[:, None, None], y),
            r"shape \[N, D\] or \[N, V, D\], got \(15, 1, 1, 4\)",
        ),
        "labels-length-views": (
            lambda x, y: (torch.stack([x, x], dim=1), y.repeat_interleave(2)),
            r"labels must have shape \[N\] = \[15\] \(one per image.*\[N, V, D\] = \(15, 2, 4\), got \(30,\)",
        ),
        "float-labels-views": (
            lambda x, y: (x[:, None], y.float()),
            r"labels must be an integer tensor.*float32",
        ),
        "sparse-views": (lambda x, y: (x[:, None].to_sparse(), y), r"embeddings must be a dense tensor"),
        "sparse-labels-views": (lambda x, y: (x[:, None], y.to_sparse()), r"labels must be a dense tensor"),
        "labels-on-meta-views": (lambda x, y: (x[:, None], y.to("meta")), r"labels are on device meta"),
    },
}


@pytest.mark.parametrize(
    ("loss", "case"), [(loss, case) for loss in LOSSES for case in {**COMMON, **ONLY[loss]}]
)
@pytest.mark.parametrize("normalize", [True, False])
def test_bad_inputs_raise_value_error(loss, case, normalize):
    x, y = uneven_batch()
    make, message = {**COMMON, **ONLY[loss]}[case]
    with pytest.raises(ValueError, match=message):
        LOSSES[loss](normalize=normalize)(*make(x, y))


# Options that every batch loss checks alike (the loss-specific ones are tested in the loss's own file).
BAD_OPTIONS = {
    "temperature-nan": ({"temperature": math.nan}, r"temperature"),
    "reduction": ({"reduction": "avg"}, r"reduction='avg'.*'mean'"),
}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_options_raise_value_error(loss, case):
    options, message = BAD_OPTIONS[case]
    with pytest.raises(ValueError, match=message):
        LOSSES[loss](**options)
