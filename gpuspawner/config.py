"""Check a hub's gpuspawner settings while the hub starts, not at the first spawn.

JupyterHub builds a spawner only when a user starts a server, so a catalog or
inventory mistake would otherwise surface in front of a user. End the hub's config
file with::

    from gpuspawner.config import check_config
    check_config(c)

and a bad setting stops the hub at start with the reason.
"""

from traitlets import TraitError

from .errors import ConfigError


def check_config(config, spawner_class=None) -> None:
    """Build one spawner from ``config``; raise ConfigError with the reason when it cannot be."""
    if spawner_class is None:
        from .docker import GPUDockerSpawner as spawner_class
    try:
        spawner_class(config=config)
    except (TraitError, ConfigError) as e:
        raise ConfigError("gpuspawner configuration: %s" % e) from None
