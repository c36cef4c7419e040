"""Exceptions that carry a sentence meant for a person."""


class ConfigError(ValueError):
    """The hub's configuration is wrong; the message says what and where."""


class OptionsError(ValueError):
    """A user's spawn options were refused; the message says why, for the user."""


def check_fields(where: str, entry, known: set[str]) -> None:
    """Refuse a config entry with fields nobody reads (usually a typo)."""
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(
            "%s has unknown field(s) %s; the fields are: %s."
            % (where, ", ".join(map(repr, unknown)), ", ".join(sorted(known)))
        )
