"""Tools over many ``silhouette-fit`` runs, built on the run folders that the command leaves.

* :mod:`~silhouette_lightning.experiments.runs`: the run-folder rules (where a run lives, what it holds,
  when it is finished) and the reading of a run's config, written once for every tool.
* :mod:`~silhouette_lightning.experiments.sweep`: ``silhouette-sweep``, methods x data sets x seeds, one
  after the other or as a SLURM array job.
* :mod:`~silhouette_lightning.experiments.report`: ``silhouette-report``, many runs -> one table and chart.

Nothing here is imported by the library (losses, terms, module, data, metrics, callbacks).
"""
