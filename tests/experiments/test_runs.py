"""The run-folder rules (``experiments.runs``) that silhouette-fit, -sweep and -report share."""

from pathlib import Path

import pytest

from silhouette_lightning.experiments import runs


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("version", "folder"), [(0, "version_0"), (12, "version_12"), ("seed_3", "seed_3")])
def test_logger_versions_and_their_folders_map_both_ways(version, folder):
    assert runs.version_folder(version) == folder
    assert runs.logger_version(folder) == version
    assert runs.run_folder("runs", "ce", version) == Path("runs") / "ce" / folder


def test_a_version_folder_that_is_not_a_number_keeps_its_name():
    assert runs.logger_version("version_x") == "version_x"


def test_finished_means_test_columns_and_trained_means_train_columns(tmp_path):
    assert not runs.is_finished(tmp_path)  # no metrics.csv yet
    _write(tmp_path / "metrics.csv", "epoch,step,train/loss,val/acc\n0,9,1.5,0.5\n")
    assert not runs.is_finished(tmp_path)
    rows = runs.read_metrics(tmp_path)
    assert rows == [{"epoch": "0", "step": "9", "train/loss": "1.5", "val/acc": "0.5"}]
    assert runs.was_trained(rows)
    _write(tmp_path / "metrics.csv", "epoch,step,test/acc\n0,0,0.75\n")
    assert runs.is_finished(tmp_path)
    assert not runs.was_trained(runs.read_metrics(tmp_path))  # a test call's folder


@pytest.mark.parametrize(
    ("logger", "name", "init_args"),
    [
        ({"class_path": "CSVLogger", "init_args": {"name": "ce", "save_dir": "x"}}, "ce", {"name": "ce"}),
        ([{"init_args": {"name": "first"}}, {"init_args": {"name": "second"}}], "first", {"name": "first"}),
        ({"name": "plain"}, "plain", {}),
        ([], None, {}),
        (False, None, {}),
    ],
)
def test_the_first_logger_names_the_method(logger, name, init_args):
    config = {"trainer": {"logger": logger}}
    assert runs.logger_name(config) == name
    assert init_args.items() <= runs.logger_init_args(config).items()
    assert runs.logger_name({}) is None and runs.logger_init_args({}) == {}


def test_configs_read_as_mappings_and_bad_yaml_is_a_one_line_error(tmp_path):
    assert runs.run_config(tmp_path) == {}  # no config.yaml
    _write(tmp_path / "config.yaml", "data:\n  dataset: digits\n")
    assert runs.run_config(tmp_path) == {"data": {"dataset": "digits"}}
    assert runs.read_config(_write(tmp_path / "list.yaml", "- a\n- b\n")) == {}
    with pytest.raises(runs.ExperimentError, match=r"Cannot read '.*broken.yaml'"):
        runs.read_config(_write(tmp_path / "broken.yaml", "a: [1,\n"))


def test_run_folders_are_found_below_a_path_once_each(tmp_path):
    for version in ("version_0", "version_1"):
        _write(tmp_path / "runs" / "ce" / version / "metrics.csv", "epoch\n")
    found = runs.find_run_folders([tmp_path / "runs", tmp_path / "runs" / "ce" / "version_1"])
    assert found == [(tmp_path / "runs" / "ce" / v).resolve() for v in ("version_0", "version_1")]
    with pytest.raises(runs.ExperimentError, match="does not exist"):
        runs.find_run_folders([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.ExperimentError, match="No metrics.csv found under"):
        runs.find_run_folders([tmp_path / "empty"])
