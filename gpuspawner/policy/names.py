"""Engine object names for any user name the hub accepts, and how user input is quoted (pure).

JupyterHub accepts user names of up to 255 characters of any kind; once escaped for an
engine (DockerSpawner's escape turns every character outside [a-z0-9] into ``-xx`` per
UTF-8 byte) they can pass the engine's limits: a Docker volume is a directory, so its name
is at most 255 bytes; a Kubernetes object name (pod, PVC) at most 63 characters.

:func:`fit_name` keeps a name that fits as it is (so existing workspaces keep their
volumes), and otherwise cuts it and adds ``---`` and a hash of the whole name, as
kubespawner's safe slugs do. DockerSpawner's escaped names never contain ``--`` followed by
``-`` (its escape character is always followed by two hex digits), so a cut name cannot equal
a name that was kept; two cut names differ unless their 32-bit hashes collide.
"""

import hashlib

DOCKER_NAME_MAX = 255  # a volume is a directory under /var/lib/docker/volumes: NAME_MAX bytes
KUBE_NAME_MAX = 63  # a DNS label (RFC 1123): pod and PVC names
HASH_LENGTH = 8
QUOTE_LIMIT = 40  # characters of user input a sentence quotes

# characters the engines cannot carry in an environment value or a label
UNSERVABLE = {"\x00": "a NUL character (\\x00)"}


def name_hash(name: str) -> str:
    """A short, stable hash of ``name``."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def fit_name(name: str, max_length: int) -> str:
    """``name`` if it is at most ``max_length`` characters, else its start, '---' and a hash.

    The result is at most ``max_length`` characters and ends with a letter or digit when
    cut; the start keeps the name recognisable in ``docker ps`` and ``kubectl get``.
    """
    if len(name) <= max_length:
        return name
    keep = max_length - HASH_LENGTH - 3
    if keep < 1:
        raise ValueError("names cannot be cut below %d characters" % (HASH_LENGTH + 4))
    return "%s---%s" % (name[:keep].rstrip("-_."), name_hash(name))


def quote_input(value, limit: int = QUOTE_LIMIT) -> str:
    """User input for a sentence: a short escaped prefix, never the whole of a long value.

    Strings are quoted with repr() (control characters escaped); other values by their
    repr(); anything longer than ``limit`` characters is cut and its length said.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    return "%s… (%d characters)" % (repr(text[:limit]), len(text))


def unservable_reason(what: str, name: str) -> str | None:
    """Why a server cannot be started for this user or server name, or None."""
    found = [words for char, words in UNSERVABLE.items() if char in name]
    if not found:
        return None
    return (
        "This %s cannot be served: it contains %s, which a server's environment cannot"
        " carry. Ask an admin to rename it." % (what, " and ".join(found))
    )
