"""The ``silhouette-fit`` command-line tool, built on the library (module, data, callbacks).

* :mod:`~silhouette_lightning.cli.fit`: :class:`SilhouetteCLI` (LightningCLI), :func:`run_cli` and
  :func:`main`, the entry point of ``silhouette-fit`` and ``python -m silhouette_lightning``.
* :mod:`~silhouette_lightning.cli.config_checks`: settings that cannot do what the user meant, refused
  before anything trains.
* :mod:`~silhouette_lightning.cli.launch_checks`: devices, nodes and the launcher (torchrun, SLURM) must
  agree before the Trainer is built.
* :mod:`~silhouette_lightning.cli.resume`: ``--ckpt_path last`` across the runs of one name.
* :mod:`~silhouette_lightning.cli.checkpointing`: ``last.ckpt`` every epoch, atomic checkpoint writes,
  checkpoint and folder checks.
"""

from silhouette_lightning.cli.fit import SilhouetteCLI, main, run_cli

__all__ = ["SilhouetteCLI", "main", "run_cli"]
