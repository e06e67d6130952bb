"""silhouette-lightning: representation learning with the Soft Silhouette loss."""

__version__ = "0.1.0"
