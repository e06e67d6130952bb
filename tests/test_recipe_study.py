"""The recipe study's run plan (benchmarks/recipe_study.py): Omniglot's alphabet rotation holds out exactly
one whole alphabet per fold, every option is one change from the recommended recipe, and the planned
commands parse."""

import json
import sys
from pathlib import Path

import pytest

from silhouette_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import recipe_study  # noqa: E402

# A fake extracted archive: alphabets of 24, 6 and 1 characters (class folders only; plan() reads names).
ALPHABETS = {
    "Greek": [f"character{k:02d}" for k in range(1, 25)],
    "Latin": [chr(ord("a") + k) for k in range(6)],
    "Runic": ["x"],
}


@pytest.fixture
def omniglot(tmp_path, monkeypatch):
    for alphabet, characters in ALPHABETS.items():
        for character in characters:
            (tmp_path / f"{alphabet}__{character}").mkdir()
    monkeypatch.setattr(recipe_study, "OMNIGLOT", tmp_path)
    monkeypatch.setattr(recipe_study, "OMNIGLOT_ARCHIVE", tmp_path / "missing.tar.gz")
    return tmp_path


def _value(args, key):
    return args[args.index(key) + 1]


def test_omniglot_unseen_folds_hold_out_one_whole_alphabet(omniglot):
    runs = recipe_study.plan(["omniglot"], ["unseen"], seeds=[0, 1], option_seeds=[0])
    methods = recipe_study.METHODS
    assert len(runs) == len(ALPHABETS) * 2 * len(methods)
    for alphabet, characters in ALPHABETS.items():
        fold = [run for run in runs if run.folder.parts[2] == f"omniglot_unseen_{alphabet}"]
        assert [(run.seed, run.method) for run in fold] == [(s, m) for s in (0, 1) for m in methods]
        for run in fold:
            held_out = json.loads(_value(run.args, "--data.unseen_classes"))
            assert held_out == [f"{alphabet}__{c}" for c in sorted(characters)]
            # 20-way (and 5-way) episodes need that many held-out characters.
            ways = [n for n in (5, 20) if n <= len(characters)]
            assert (
                json.loads(_value(run.args, "--model.fewshot"))["ways"] == ways
                if ways
                else ("--model.fewshot" not in run.args)
            )
            folder = Path("runs/recipe") / f"omniglot_unseen_{alphabet}" / run.method / f"seed_{run.seed}"
            assert run.folder == folder
            # Resumable and skippable: its own logger version, resumed from its last checkpoint.
            assert _value(run.args, "--trainer.logger.init_args.version") == f"seed_{run.seed}"
            assert run.args[-2:] == ("--ckpt_path", "last")


def test_folds_select_alphabets_and_unknown_ones_are_refused(omniglot):
    runs = recipe_study.plan(["omniglot"], ["unseen"], seeds=[0], option_seeds=[0], folds=["Latin"])
    assert {run.folder.parts[2] for run in runs} == {"omniglot_unseen_Latin"}
    with pytest.raises(SystemExit, match="Korean"):
        recipe_study.plan(["omniglot"], ["unseen"], seeds=[0], option_seeds=[0], folds=["Korean"])


def test_alphabet_folds_refuses_a_folder_without_an_alphabet():
    with pytest.raises(ValueError, match="alphabet"):
        recipe_study.alphabet_folds(["Greek__alpha", "stray"])


def test_options_change_one_thing_from_the_recommended_recipe(omniglot):
    runs = recipe_study.plan(["omniglot"], ["options"], seeds=[0], option_seeds=[0], folds=["Runic", "Greek"])
    labels = list(recipe_study.options(recipe_study.DATASETS["omniglot"]))
    assert [run.method for run in runs] == [f"ce_silhouette_{label}" for label in labels] * 2
    # The first requested fold's unseen classes (every image of them), then the seen classes.
    unseen, seen = runs[: len(labels)], runs[len(labels) :]
    assert {run.folder.parts[2] for run in seen} == {"omniglot_options"}
    assert {run.folder.parts[2] for run in unseen} == {"omniglot_options_unseen_Runic"}
    assert all(json.loads(_value(r.args, "--data.unseen_classes")) == ["Runic__x"] for r in unseen)
    assert all(_value(r.args, "--data.unseen_test") == "all" for r in unseen)
    assert all("--data.unseen_test" not in r.args for r in seen)
    for run in seen:
        changed = run.method.removeprefix("ce_silhouette_")
        option = recipe_study.options(recipe_study.DATASETS["omniglot"])[changed]
        if option.silhouette:
            terms = json.loads(_value(run.args, "--model.losses"))
            shipped = {"weight": 1.0, "soft_min": "hard"}  # configs/method/ce_silhouette.yaml's term
            assert terms[1]["init_args"] == {**shipped, **option.silhouette}
        else:
            assert "--model.losses" not in run.args and set(option.args) <= set(run.args)


def test_options_come_from_the_softmax_or_the_hard_two_layer_recipe():
    options = recipe_study.options(recipe_study.DATASETS["omniglot"])
    hard = {label: option for label, option in options.items() if label.startswith("hard")}
    softmax = {label: option for label, option in options.items() if label not in hard}
    # The same changes on both recipes; the temperatures only where there is a temperature, and no
    # hard_head1: the hard minimum with one head layer is the shipped recipe (the methods part).
    temperatures = {"T0.05", "T0.2", "T0.5"}
    changes = {label.removeprefix("hard_") for label in hard} - {"hard"}
    assert changes == set(softmax) - {"softmax", "head1", *temperatures}
    assert all(option.silhouette["soft_min"] == "softmax" for option in softmax.values())
    assert all("soft_min" not in option.silhouette for option in hard.values())
    assert hard["hard"] == recipe_study.Option({}, ("--model.head_layers", "2"))
    assert hard["hard_memory"].silhouette == {"memory_size": 512}
    assert hard["hard_balanced"].args == softmax["balanced"].args


def test_planned_commands_parse(omniglot, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the commands name configs relative to the repository
    parts = ["methods", "unseen", "options"]
    runs = recipe_study.plan(["digits", "cifar10", "omniglot"], parts, [0], [0], ["Latin"])
    picked = {(run.folder.parts[2], run.method): run for run in runs}
    for key in [
        ("digits", "hybrid"),
        ("digits_unseen", "supcon"),
        ("digits_options_unseen", "ce_silhouette_balanced"),
        ("cifar10", "triplet"),
        ("cifar10_options_unseen", "ce_silhouette_softmax"),
        ("omniglot_unseen_Latin", "proxy_anchor"),
        ("omniglot_options", "ce_silhouette_memory"),
        ("omniglot_options", "ce_silhouette_head1"),
        ("omniglot_options", "ce_silhouette_hard_memory"),
        ("omniglot_options_unseen_Latin", "ce_silhouette_hard"),
        ("omniglot_unseen_Latin", "ce_silhouette"),
    ]:
        with pytest.raises(SystemExit) as info:
            main([*picked[key].args, "--print_config"])
        assert info.value.code == 0, key
        printed = capsys.readouterr().out
        assert f"name: {key[1]}" in printed and "- embeddings\n" in printed and "- features\n" in printed
        # The shipped recipe and the softmax recipe's head1 have one head layer; every other option two.
        one_layer = key[1] in ("ce_silhouette", "ce_silhouette_head1")
        assert f"head_layers: {1 if one_layer else 2}\n" in printed, key


def test_only_and_option_sides_pick_runs(omniglot):
    runs = recipe_study.plan(
        ["omniglot"], ["unseen", "options"], seeds=[1], option_seeds=[1], folds=["Greek"],
        only=["ce", "softmax"], option_sides=["unseen"],
    )  # fmt: skip
    assert [(run.folder.parts[2], run.method, run.seed) for run in runs] == [
        ("omniglot_unseen_Greek", "ce", 1),
        ("omniglot_options_unseen_Greek", "ce_silhouette_softmax", 1),
    ]


def test_paired_rows_subtract_ce_features_fold_by_fold():
    def row(**values):
        return {f"test/{key.replace('__', '/')} mean": str(value) for key, value in values.items()}

    folds = {
        "a": {"ce": row(features__precision_at_1=0.5, embeddings__precision_at_1=0.4),
              "x": row(features__precision_at_1=0.65, embeddings__precision_at_1=0.45)},
        "b": {"ce": row(features__precision_at_1=0.8, embeddings__precision_at_1=0.7),
              "x": row(features__precision_at_1=0.7, embeddings__precision_at_1=0.9),
              "only_here": row(features__precision_at_1=1.0)},
    }  # fmt: skip
    rows = {(m, o): cells for m, o, cells in recipe_study.paired_rows(folds, ["precision_at_1"])}
    # Methods missing from a fold are left out; each cell: mean [min, max], folds ahead.
    assert {m for m, _ in rows} == {"ce", "x"}
    assert rows[("x", "features")] == ["+0.025 [-0.100, +0.150], 1/2"]
    assert rows[("x", "embeddings")] == ["+0.025 [-0.050, +0.100], 1/2"]
    assert rows[("ce", "features")] == ["+0.000 [+0.000, +0.000], 0/2"]
