"""Embedding a folder of new images with a trained checkpoint: ``silhouette-embed`` (see :mod:`.command`)."""
