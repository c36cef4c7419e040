"""The Docker backend: a DockerSpawner that hands out distinct GPUs by UUID.

- :mod:`.spawner`: ``GPUDockerSpawner`` (``c.JupyterHub.spawner_class = "gpu-docker"``)
- :mod:`.spec`: the container's ``create_container`` kwargs from a dataclass (pure)
- :mod:`.pull`: image pulls through the engine's stream, as progress and sentences
- :mod:`.prepull`: ``python -m gpuspawner.docker.prepull``: pull the whole catalog

``GPUDockerSpawner`` is importable from here (``gpuspawner.docker:GPUDockerSpawner``, the
entry point); it is loaded on first use, so the pure modules need no dockerspawner.
"""

__all__ = ["GPUDockerSpawner"]


def __getattr__(name):
    from importlib import import_module

    from .._moved import moved_warning

    for part in ("spawner",):
        module = import_module(".%s" % part, __name__)
        if hasattr(module, name):
            if name != "GPUDockerSpawner":
                # gpuspawner.docker was one module before 0.x; its other names moved with it
                moved_warning("%s.%s" % (__name__, name), "%s.%s" % (module.__name__, name))
            value = globals()[name] = getattr(module, name)
            return value
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
