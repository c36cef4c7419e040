"""``python -m gpuspawner.ssh``: the SSH service, as the hub starts it (see add_ssh_service)."""

from .server import main

main()
