"""``python -m silhouette_lightning.embed`` is the same as the ``silhouette-embed`` command."""

from silhouette_lightning.embed.command import main

if __name__ == "__main__":
    main()
