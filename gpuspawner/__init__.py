"""gpuspawner: JupyterHub spawners that give each user their own GPUs, a quota and a workspace."""

from ._version import __version__

__all__ = ["__version__"]
