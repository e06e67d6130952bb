"""Every loss of the family under bf16 and fp16 autocast (CPU): it must compute in float32.

Under autocast the embeddings arrive in half precision. Given those same (rounded) embeddings, each loss
must give the float32 result: float32 output, finite values and gradients, equal to float32 arithmetic
on the upcast embeddings up to float32 rounding, and gradients equal up to the half-precision rounding
of the gradient itself. (Rounding *inside* a network that produces the embeddings is the network's
business, and fp16 gradients that underflow without a GradScaler are the trainer's.)
"""

import pytest
import torch

from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss
from silhouette_lightning.losses.corel import CorelLoss

LOSSES = {
    "silhouette-pairwise": lambda: SoftSilhouetteLoss(),  # the default: the hard minimum
    "silhouette-centroid": lambda: SoftSilhouetteLoss(variant="centroid"),
    "silhouette-pairwise-softmax": lambda: SoftSilhouetteLoss(soft_min="softmax"),
    "silhouette-centroid-softmax": lambda: SoftSilhouetteLoss(variant="centroid", soft_min="softmax"),
    "silhouette-sqeuclidean-hard": lambda: SoftSilhouetteLoss(distance="sqeuclidean", soft_min="hard"),
    "silhouette-cosine-logsumexp": lambda: SoftSilhouetteLoss(distance="cosine", soft_min="logsumexp"),
    "silhouette-unnormalized": lambda: SoftSilhouetteLoss(normalize=False),
    "silhouette-unnormalized-softmax": lambda: SoftSilhouetteLoss(normalize=False, soft_min="softmax"),
    "supcon": lambda: SupConLoss(),
    "corel-cosine": lambda: CorelLoss(8, 16, kind="cosine"),
    "corel-gaussian": lambda: CorelLoss(8, 16, kind="gaussian"),
}
# Rounding of one half-precision number (the gradient w.r.t. a half leaf is stored in one): relative, and
# absolute near zero, where fp16's subnormals are 2^-24 apart (tiny gradients of norm-1e4 points).
RESOLUTION = {torch.bfloat16: 2**-8, torch.float16: 2**-11}
SUBNORMAL_SPACING = {torch.bfloat16: 2**-133, torch.float16: 2**-24}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4], ids=["unit", "norm-1e-3", "norm-1e4"])
def test_half_precision_embeddings_are_computed_in_float32(name, dtype, scale):
    torch.manual_seed(0)
    loss = LOSSES[name]()
    labels = torch.arange(64) % 5
    labels[0] = 7  # a singleton class
    embeddings = torch.randn(64, 16) * scale
    embeddings[2] = embeddings[1]  # a duplicate point
    half = embeddings.to(dtype).requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        value = loss(half, labels)
    value.backward()
    upcast = half.detach().float().requires_grad_(True)
    reference = loss(upcast, labels)
    reference.backward()

    assert value.dtype == torch.float32
    assert torch.isfinite(value) and torch.isfinite(half.grad).all()
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)
    tolerance = 2 * RESOLUTION[dtype] * upcast.grad.abs().max().item() + SUBNORMAL_SPACING[dtype]
    assert (half.grad.float() - upcast.grad).abs().max() <= tolerance
