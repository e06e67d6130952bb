"""``python -m silhouette_lightning`` is the same as the ``silhouette-fit`` command;
``python -m silhouette_lightning embed ...`` is ``silhouette-embed ...``."""

import sys

from silhouette_lightning.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["embed"]:
        from silhouette_lightning.embed.command import main as embed_main

        embed_main(sys.argv[2:])
    else:
        main()
