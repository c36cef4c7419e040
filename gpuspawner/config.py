"""Check a hub's gpuspawner settings while the hub starts, not at the first spawn.

JupyterHub builds a spawner only when a user starts a server, so a catalog or
inventory mistake would otherwise surface in front of a user. End the hub's config
file with::

    from gpuspawner.config import check_config
    check_config(c)

and a bad setting stops the hub at start with the reason. The hub's log then says what
the host offers (the GPUs found or declared, whether the engine can attach them, which
catalog images are here). With ``secrets_keys`` set it also checks that they decrypt the
users' stored secrets (and re-encrypts those stored under an older key with the first).
"""

from traitlets import TraitError

from .errors import ConfigError


def check_config(config, spawner_class=None) -> None:
    """Build one spawner from ``config``; raise ConfigError with the reason when it cannot be."""
    if spawner_class is None:
        from .docker import GPUDockerSpawner as spawner_class
    try:
        spawner = spawner_class(config=config)
    except (TraitError, ConfigError) as e:
        raise ConfigError("gpuspawner configuration: %s" % e) from None
    from .usage.secrets import check_secrets

    try:
        check_secrets(spawner)  # the keys decrypt users' stored secrets (re-encrypted if old)
    except ConfigError as e:
        raise ConfigError("gpuspawner configuration: %s" % e) from None
    spawner.report_host()  # the hub's log says what it found: GPUs, engine, images
