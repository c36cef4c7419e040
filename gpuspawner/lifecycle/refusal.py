"""A spawn refused by policy, with the sentence the user reads."""

from jupyterhub.spawner import SpawnException

from ..usage.hub_metrics import count_refusal


class SpawnRefused(SpawnException):
    """A spawn refused by policy: the form, the progress page and the API show the sentence
    as is."""

    def __init__(self, message: str, *, reason: str, status_code: int):
        super().__init__(message, reason=reason, status_code=status_code)
        self.jupyterhub_message = message
        count_refusal(reason)
