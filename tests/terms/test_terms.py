import pytest
import torch

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses import SoftSilhouetteLoss
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm
from tests.terms.model_outputs import random_model_outputs

_outputs = random_model_outputs


def test_views_are_flattened_image_major_with_repeated_labels():
    outputs, labels = _outputs(), torch.tensor([0, 1, 2, 0, 1, 2])
    x, y = SoftSilhouetteTerm().select(outputs, labels)
    assert torch.equal(x[0], outputs.embeddings[0, 0]) and torch.equal(x[1], outputs.embeddings[0, 1])
    assert y.tolist() == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    x, y = SoftSilhouetteTerm(views="first").select(outputs, labels)
    assert torch.equal(x, outputs.embeddings[:, 0]) and torch.equal(y, labels)


def test_cross_entropy_term_matches_functional_on_all_views():
    outputs, labels = _outputs(), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = torch.nn.functional.cross_entropy(
        outputs.logits.flatten(0, 1), labels.repeat_interleave(2), label_smoothing=0.1
    )
    assert torch.allclose(CrossEntropyTerm(label_smoothing=0.1)(outputs, labels), expected)


@pytest.mark.parametrize("input_name", ["embeddings", "features"])
def test_silhouette_term_reads_the_configured_output(input_name):
    outputs, labels = _outputs(), torch.tensor([0, 1, 2, 0, 1, 2])
    term = SoftSilhouetteTerm(input=input_name, soft_min="softmax", temperature=0.2, distance="cosine")
    expected = SoftSilhouetteLoss(soft_min="softmax", temperature=0.2, distance="cosine")(
        outputs.get(input_name).flatten(0, 1), labels.repeat_interleave(2)
    )
    assert torch.allclose(term(outputs, labels), expected)


def test_term_names_and_bad_arguments():
    assert CrossEntropyTerm().name == "ce" and SoftSilhouetteTerm().name == "silhouette"
    assert SoftSilhouetteTerm(name="sil_feat").name == "sil_feat"
    with pytest.raises(ConfigError, match="name"):
        SoftSilhouetteTerm(name="a/b")
    with pytest.raises(ConfigError, match="weight"):
        CrossEntropyTerm(weight=-1)
    with pytest.raises(ConfigError, match="input='logit'"):
        SoftSilhouetteTerm(input="logit")
    with pytest.raises(ConfigError, match="temperature"):
        SoftSilhouetteTerm(temperature=-0.1)
