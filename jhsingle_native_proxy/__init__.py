"""Run any web app as a JupyterHub single-user server, behind the hub's authentication."""

from ._version import __version__

__all__ = ["__version__"]
