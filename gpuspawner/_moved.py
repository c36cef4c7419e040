"""Module paths of gpuspawner 0.x that moved when the package was grouped into folders.

They stay importable for one release: ``import gpuspawner.quota`` gives a module that
forwards every name to :mod:`gpuspawner.policy.quota` and warns (DeprecationWarning)
once, on import. :data:`MOVED` is the whole map, old path -> new path(s); a split module
lists each part, searched in order. The finder is consulted last, after the real modules.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

MOVED = {
    "gpuspawner.allocation": ("gpuspawner.policy.allocation",),
    "gpuspawner.base": ("gpuspawner.lifecycle.base", "gpuspawner.lifecycle.refusal"),
    "gpuspawner.budget": ("gpuspawner.policy.budget",),
    "gpuspawner.catalog": ("gpuspawner.policy.catalog",),
    "gpuspawner.cuda": ("gpuspawner.policy.cuda",),
    "gpuspawner.culler": ("gpuspawner.usage.culler",),
    "gpuspawner.dockerspec": ("gpuspawner.docker.spec",),
    "gpuspawner.inventory": ("gpuspawner.policy.inventory",),
    "gpuspawner.kubespec": (
        "gpuspawner.kube.objects",
        "gpuspawner.kube.nodes",
        "gpuspawner.kube.messages",
    ),
    "gpuspawner.ledger": ("gpuspawner.usage.ledger",),
    "gpuspawner.merge": ("gpuspawner.policy.merge",),
    "gpuspawner.metrics": ("gpuspawner.usage.hub_metrics", "gpuspawner.service.service_metrics"),
    "gpuspawner.options": ("gpuspawner.policy.options",),
    "gpuspawner.pull": ("gpuspawner.docker.pull",),
    "gpuspawner.quota": ("gpuspawner.policy.quota",),
}


def moved_warning(old: str, new: str) -> None:
    warnings.warn(
        "%s has moved to %s; the old name will be removed in the next release." % (old, new),
        DeprecationWarning,
        stacklevel=3,
    )


def forwarder(name: str, targets: tuple[str, ...]) -> types.ModuleType:
    """A module named ``name`` whose attributes are looked up in ``targets``, in order."""
    module = types.ModuleType(name, "Moved to %s." % " and ".join(targets))

    def __getattr__(attribute):
        for target in targets:
            real = importlib.import_module(target)
            if hasattr(real, attribute):
                return getattr(real, attribute)
        raise AttributeError("module %r has no attribute %r" % (name, attribute))

    module.__getattr__ = __getattr__
    return module


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED` (and nothing else)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return forwarder(spec.name, MOVED[spec.name])

    def exec_module(self, module):
        targets = MOVED[module.__name__]
        for target in targets:
            importlib.import_module(target)
        moved_warning(module.__name__, " and ".join(targets))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
