"""The gpuspawner version, written once: in labextension/package.json (hatch reads it there)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpuspawner")
except PackageNotFoundError:  # a source tree that was never installed
    import json
    from pathlib import Path

    _package_json = Path(__file__).resolve().parents[1] / "labextension" / "package.json"
    __version__ = json.loads(_package_json.read_text())["version"]
