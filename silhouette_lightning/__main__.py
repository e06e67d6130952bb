"""``python -m silhouette_lightning`` is the same as the ``silhouette-fit`` command."""

from silhouette_lightning.cli import main

if __name__ == "__main__":
    main()
