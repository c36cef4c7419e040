"""Exceptions that carry a sentence meant for a person."""


class ConfigError(ValueError):
    """The hub's configuration is wrong; the message says what and where."""


class OptionsError(ValueError):
    """A user's spawn options were refused; the message says why, for the user."""
