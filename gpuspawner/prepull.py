"""``python -m gpuspawner.prepull -f jupyterhub_config.py``: pull every catalog image.

The command's name; the code is the Docker backend's :mod:`gpuspawner.docker.prepull`.
"""

import sys

from .docker.prepull import main

if __name__ == "__main__":
    sys.exit(main())
