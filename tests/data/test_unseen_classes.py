"""Seen/unseen class splits: the data side, the model side, and the shipped configs."""

from collections import Counter

import pytest

from silhouette_lightning.cli import main, run_cli
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.data.transforms import IMAGENET_STATS
from silhouette_lightning.errors import ConfigError
from tests.cli_args import config_args
from tests.data.colour_images import all_batches, labels_from_colour, write_images


def test_a_count_holds_out_seeded_classes_and_relabels_both_sides():
    dm = ImageDataModule("digits", unseen_classes=4, seed=3)
    again = ImageDataModule("digits", unseen_classes=4, seed=3)
    assert dm.class_names == again.class_names and len(dm.class_names) == dm.num_classes == 6
    assert sorted(dm.class_names + dm.test_class_names) == [str(d) for d in range(10)]
    assert dm.test_on_unseen_classes
    train, val, test = (dm.split_dataset(s) for s in ("train", "val", "test"))
    assert set(train.targets) == set(val.targets) == set(range(6))
    assert set(test.targets) == set(range(4))
    # Relabelling keeps each sample's class: the original digit of a test sample is an unseen name.
    original = {new: int(name) for new, name in enumerate(dm.test_class_names)}
    base_labels = [dm.source.load_split("test").base[int(i)][1] for i in test.indices[:20]]
    assert [original[t] for t in test.targets[:20]] == base_labels
    _, label = test[0]
    assert label == test.targets[0]


def test_setup_says_once_which_classes_were_held_out(caplog):
    dm = ImageDataModule("digits", unseen_classes=4, seed=3)
    with caplog.at_level("INFO"):
        dm.setup("fit")
        dm.setup("test")
    said = [record.getMessage() for record in caplog.records if "data.unseen_classes" in record.getMessage()]
    assert len(said) == 1
    assert f"tested: {', '.join(dm.test_class_names)};" in said[0]
    assert f"trained on: {', '.join(dm.class_names)}." in said[0]


def test_names_and_indices_select_the_unseen_classes():
    dm = ImageDataModule("digits", unseen_classes=["3", 7])
    assert dm.test_class_names == ["3", "7"] and "3" not in dm.class_names
    assert Counter(dm.split_dataset("test").targets).keys() == {0, 1}


def test_unseen_test_all_tests_every_image_of_the_unseen_classes():
    split = ImageDataModule("digits", unseen_classes=4, seed=3)
    every = ImageDataModule("digits", unseen_classes=4, seed=3, unseen_test="all")
    unseen = set(split.class_split.unseen)
    base = every.source.load_split("train").base
    expected = Counter(int(t) for t in base.targets if int(t) in unseen)
    test = every.split_dataset("test")
    # Every image of the 4 unseen digits once, from the train, val and test splits alike.
    assert len(set(test.indices.tolist())) == len(test) == sum(expected.values())
    assert len(test) > 3 * len(split.split_dataset("test"))
    original = {new: int(name) for new, name in enumerate(every.test_class_names)}
    assert Counter(original[t] for t in test.targets) == expected
    assert [original[t] for t in test.targets] == [int(base[int(i)][1]) for i in test.indices]
    # Training and validation are unchanged.
    for name in ("train", "val"):
        assert every.split_dataset(name).indices.tolist() == split.split_dataset(name).indices.tolist()


def test_unseen_test_all_joins_an_image_folders_own_splits(tmp_path):
    write_images(tmp_path / "train", ["a", "b", "c"], per_class=5)
    write_images(tmp_path / "test", ["a", "b", "c"], per_class=2)
    dm = ImageDataModule(
        "imagefolder", root=str(tmp_path), image_size=8, batch_size=4, val_fraction=0.2,
        unseen_classes=["c"], unseen_test="all",
    )  # fmt: skip
    test = dm.split_dataset("test")
    assert len(test) == 7 and set(test.targets) == {0}
    images, labels = all_batches(dm.test_dataloader())
    assert labels_from_colour(images, IMAGENET_STATS).tolist() == [2] * 7  # all of class "c"'s images


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unseen_test": "all"}, "data.unseen_classes is not set"),
        ({"unseen_classes": 4, "unseen_test": "every"}, "'split' or 'all', got 'every'"),
    ],
)
def test_bad_unseen_test_is_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ImageDataModule("digits", **kwargs)


@pytest.mark.parametrize(
    ("unseen", "message"),
    [
        (["three"], "Valid names: 0, 1, 2"),
        (9, "leave at least 2 seen"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], "at least 2"),
    ],
)
def test_bad_unseen_classes_are_clear_errors(unseen, message):
    with pytest.raises(ConfigError, match=message):
        ImageDataModule("digits", unseen_classes=unseen)


def test_digits_5_5_trains_on_seen_and_tests_the_embedding_on_unseen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    configs = config_args("data/digits.yaml", "method/ce_silhouette.yaml", "unseen/digits_5_5.yaml")
    cli = run_cli(
        [
            "fit", *configs,
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "3",
            "--trainer.enable_progress_bar", "false",
            "--model.backbone.init_args.width", "4",
            "--model.fewshot", "{ways: [2, 5], shots: [1, 5], episodes: 20}",
        ]
    )  # fmt: skip
    assert cli.model.num_classes == 5
    logged = cli.trainer.callback_metrics
    few = ("test/fewshot_2way_1shot", "test/fewshot_5way_1shot", "test/fewshot_5way_5shot")
    for key in ("test/silhouette", "test/precision_at_1", "test/nmi", *few):
        assert key in logged and logged[key].isfinite()
    assert "test/acc" not in logged and "test/loss" not in logged  # undefined on unseen classes


@pytest.mark.parametrize(
    ("fewshot", "message"),
    [
        (
            "{shots: [5], queries: 25}",
            "model.fewshot: class '5' of the unseen test classes has 27 samples but 5-shot episodes",
        ),
        (
            "{ways: [5, 6]}",
            "only 5 classes in the unseen test classes: lower model.fewshot.ways to at most 5",
        ),
    ],
)
def test_fewshot_settings_the_unseen_classes_cannot_serve_stop_before_training(
    fewshot, message, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = ["fit", *config_args("data/digits.yaml", "unseen/digits_5_5.yaml")]
    with pytest.raises(SystemExit) as info:
        main([*args, "--trainer.logger", "false", "--model.fewshot", fewshot])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err


def test_cifar100_50_50_config_parses(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", *config_args("unseen/cifar100_50_50.yaml"), "--print_config"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "unseen_classes: 50" in printed and "dataset: cifar100" in printed
