"""The Kubernetes backend: a KubeSpawner whose pods ask for GPUs as extended resources.

- :mod:`.spawner`: ``KubeGPUSpawner`` (``c.JupyterHub.spawner_class = "gpu-kubernetes"``)
- :mod:`.objects`: the pod and PVC from dataclasses (pure)
- :mod:`.nodes`: what nodes offer: GPU resources, CUDA driver labels, capacity (pure)
- :mod:`.messages`: the scheduler's and API server's messages in plain words (pure)
- :mod:`.holdings`: the GPUs each server's pod asked for, and the quota across them (pure)
- :mod:`.namespace`: a user namespace's GPU ResourceQuota and service account
- :mod:`.listing`: the node list, shared and cached, and what it says
- :mod:`.workspace`: a deleted user's workspace claim

``KubeGPUSpawner`` is importable from here (``gpuspawner.kube:KubeGPUSpawner``, the entry
point); it is loaded on first use, so the pure modules need no kubespawner.
"""

__all__ = ["KubeGPUSpawner"]


def __getattr__(name):
    from importlib import import_module

    from .._moved import moved_warning

    for part in ("holdings", "messages", "spawner"):
        module = import_module(".%s" % part, __name__)
        if hasattr(module, name):
            if name != "KubeGPUSpawner":
                # gpuspawner.kube was one module before 0.x; its other names moved with it
                moved_warning("%s.%s" % (__name__, name), "%s.%s" % (module.__name__, name))
            value = globals()[name] = getattr(module, name)
            return value
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
