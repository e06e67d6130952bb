"""`silhouette-report` on fake CSV-logger run folders with known final metrics."""

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from silhouette_lightning.experiments.report import main

# (dataset, method) -> final test/acc of seeds 0, 1, 2; test/nmi = acc / 2.
ACC = {
    ("digits", "ce"): [0.90, 0.92, 0.97],
    ("digits", "silhouette"): [0.95, 0.96, 0.99],
    ("cifar10", "ce"): [0.50, 0.60, 0.55],
    ("cifar10", "silhouette"): [0.70, 0.62, 0.66],
}


def _write_run(
    folder: Path, dataset: str, method: str, seed: int, acc: float, *, config: bool = True
) -> None:
    folder.mkdir(parents=True)
    rows = [
        # Training epochs: val only; a stale test/acc from an earlier test call must be overridden.
        {"epoch": "0", "val/acc": "0.1", "test/acc": "0.0", "test/nmi": ""},
        {"epoch": "1", "val/acc": "0.2", "test/acc": "", "test/nmi": ""},
        {"epoch": "1", "val/acc": "", "test/acc": str(acc), "test/nmi": str(acc / 2)},
        {"epoch": "2", "val/acc": "0.3", "test/acc": "", "test/nmi": ""},
    ]
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if config:
        logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"name": method}}
        text = {"seed_everything": seed, "data": {"dataset": dataset}, "trainer": {"logger": logger}}
        (folder / "config.yaml").write_text(yaml.safe_dump(text))


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for (dataset, method), accs in ACC.items():
        for seed, acc in enumerate(accs):
            # Folder names that disagree with config.yaml: the config wins.
            _write_run(root / f"d_{dataset}" / f"m_{method}" / f"version_{seed}", dataset, method, seed, acc)
    return root


def test_table_csv_and_chart_hold_mean_and_sample_std_per_method_and_dataset(runs, tmp_path, capsys):
    out = tmp_path / "report"
    main([str(runs), "--output", str(out), "--metric", "test/nmi"])
    stdout = capsys.readouterr().out

    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader(open(out / "report.csv"))}
    assert set(rows) == set(ACC)
    for key, accs in ACC.items():
        row = rows[key]
        assert row["n"] == "3" and row["seeds"] == "0 1 2"
        assert float(row["test/acc mean"]) == pytest.approx(sum(accs) / 3)
        assert float(row["test/acc std"]) == pytest.approx(np.std(accs, ddof=1))
        assert float(row["test/nmi mean"]) == pytest.approx(sum(accs) / 6)
        assert "val/acc mean" not in row  # test metrics exist, so validation is not reported
        cell = f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}"
        line = next(line for line in stdout.splitlines() if f"| {key[1]} | {key[0]} | 3 |" in line)
        assert cell in line
    assert (out / "report.md").read_text() in stdout
    with Image.open(out / "report.png") as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_folder_names_and_val_metrics_when_there_is_no_config_and_no_test(tmp_path, capsys):
    run = tmp_path / "runs" / "mnist" / "supcon" / "version_0"
    _write_run(run, "-", "-", 0, 0.5, config=False)
    with open(run / "metrics.csv", "w") as file:
        file.write("epoch,val/acc,train/loss\n0,0.25,1.0\n1,0.75,0.5\n2,,0.4\n")
    main([str(run)])  # a run folder itself, and a single run: no std
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| supcon |"))
    assert line.startswith("| supcon | mnist | 1 |") and line.endswith("| 0.7500 |")


def test_runs_given_twice_count_once(runs, tmp_path):
    out = tmp_path / "report"
    main([str(runs), str(runs / "d_digits"), "--output", str(out)])
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [r["n"] for r in rows] == ["3"] * 4


def _error(args, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_a_folder_without_metrics_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "No metrics.csv found under" in _error([str(tmp_path / "empty")], capsys)
    assert "does not exist" in _error([str(tmp_path / "nowhere")], capsys)


def test_an_unknown_metric_lists_the_available_ones(runs, tmp_path, capsys):
    err = _error([str(runs), "--output", str(tmp_path / "r"), "--metric", "test/accuracy"], capsys)
    assert "test/accuracy" in err and "Available: test/acc, test/nmi" in err
    assert not (tmp_path / "r").exists()


def test_runs_of_other_configs_and_test_only_folders_are_not_averaged_together(tmp_path, capsys):
    """Only the seed and the run folder may differ within a row: a 5-epoch run and a test-only folder
    of the same logger name are rows of their own, labelled by what differs, and every row lists its
    folders."""
    root = tmp_path / "runs" / "quickstart"
    for version, (epochs, seed, acc) in enumerate([(30, 0, 0.98), (30, 1, 0.96), (5, 0, 0.80)]):
        folder = root / f"version_{version}"
        _write_run(folder, "digits", "quickstart", seed, acc)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["trainer"]["max_epochs"] = epochs
        config["trainer"]["logger"]["init_args"]["version"] = version  # run-specific: ignored
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for version in range(3):  # a trained run has train/* columns
        path = root / f"version_{version}" / "metrics.csv"
        text = path.read_text().splitlines()
        path.write_text("\n".join([text[0] + ",train/loss"] + [line + ",0.5" for line in text[1:]]) + "\n")
    test_only = root / "version_3"
    _write_run(test_only, "digits", "quickstart", 0, 0.5)
    config = yaml.safe_load((test_only / "config.yaml").read_text())
    config["trainer"]["max_epochs"] = 30
    (test_only / "config.yaml").write_text(yaml.safe_dump(config))

    main([str(root)])
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| quickstart")}
    assert set(rows) == {
        "| quickstart [trainer.max_epochs=30]",
        "| quickstart [trainer.max_epochs=5]",
        "| quickstart [trainer.max_epochs=30, evaluation only]",
    }
    assert "| digits | 2 | 0 1 | 0.9700 ± 0.0141 |" in rows["| quickstart [trainer.max_epochs=30]"]
    assert "| digits | 1 | 0 | 0.8000 |" in rows["| quickstart [trainer.max_epochs=5]"]
    assert "| digits | 1 | 0 | 0.5000 |" in rows["| quickstart [trainer.max_epochs=30, evaluation only]"]
    listing = out[out.index("Run folders per row:") :]
    for version in range(4):
        assert str((root / f"version_{version}").resolve()) in listing
