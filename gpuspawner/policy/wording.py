"""How gpuspawner's sentences name things: counts, servers, lists (pure)."""

from collections.abc import Sequence

from .names import quote_input


def plural(count: int, noun: str = "GPU") -> str:
    """'1 GPU', '2 GPUs'."""
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def hours_figure(hours: float) -> str:
    """'9.97', '10', '0.5': GPU-hours to two decimals, trailing zeros dropped, as the admin
    dashboard shows them (so the form's hours left and the dashboard's hours used agree)."""
    return ("%.2f" % hours).rstrip("0").rstrip(".")


def server_label(server: str) -> str:
    """How a server is named in messages."""
    return "server %s" % quote_input(server) if server else "the default server"


def join_phrases(phrases: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]
