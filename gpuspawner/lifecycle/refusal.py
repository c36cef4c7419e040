"""A spawn refused by policy, with the sentence the user reads, logged as one line.

JupyterHub logs a spawn that fails up to four times: ``Not starting <user>'s server`` (one
line), ``Error starting server`` (one line), ``Failed to spawn single-user server with form``
(with a traceback, whatever the error) and tornado's warning for the HTTP error. A refusal is
the policy's answer, not a fault: :class:`OneLineRefusals` keeps the first of those lines
(with the sentence) and drops the traceback and the repeats.
"""

import logging
import time
from collections import deque

from jupyterhub.spawner import SpawnException

from ..usage.hub_metrics import count_refusal

#: how long after a refusal the log lines JupyterHub writes about it count as repeats
REPEAT_WINDOW_SECONDS = 30.0


class SpawnRefused(SpawnException):
    """A spawn refused by policy: the form, the progress page and the API show the sentence
    as is; the hub's log has it on one line, without a traceback."""

    def __init__(self, message: str, *, reason: str, status_code: int):
        super().__init__(message, reason=reason, status_code=status_code)
        self.jupyterhub_message = message
        count_refusal(reason)
        ONE_LINE_REFUSALS.expect(message)


class OneLineRefusals(logging.Filter):
    """A log filter: the first record about a recent refusal passes, without its traceback
    and ending with the sentence; later records about the same refusal are dropped."""

    def __init__(self):
        super().__init__()
        # [sentence, logged yet, monotonic time of the refusal], newest last
        self._recent: deque[list] = deque(maxlen=16)

    def expect(self, sentence: str) -> None:
        """A refusal with ``sentence`` was just made: log lines about it follow."""
        self._recent.append([sentence, False, time.monotonic()])

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._recent:
            return True
        refusal = record.exc_info[1] if record.exc_info else None
        if not isinstance(refusal, SpawnRefused):
            refusal = None
        if refusal is not None:
            record.exc_info = record.exc_text = None
            record.stack_info = None
        if record.levelno < logging.WARNING:
            return True  # only the error lines are JupyterHub's repeats
        sentence = refusal.message if refusal is not None else None
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: not ours
            return True
        now = time.monotonic()
        for entry in reversed(self._recent):
            if now - entry[2] > REPEAT_WINDOW_SECONDS:
                break
            if entry[0] != sentence and entry[0] not in text:
                continue
            if entry[1]:
                return False
            entry[1] = True
            if entry[0] not in text:
                record.msg, record.args = "%s: %s" % (text, entry[0]), ()
            return True
        return True


ONE_LINE_REFUSALS = OneLineRefusals()


def install_on(logger: logging.Logger) -> None:
    """Filter refusals in every handler of ``logger`` (a handler's filter also sees what
    tornado's loggers pass up to the hub's log; the logger's own would not)."""
    for handler in logger.handlers:
        if ONE_LINE_REFUSALS not in handler.filters:
            handler.addFilter(ONE_LINE_REFUSALS)
