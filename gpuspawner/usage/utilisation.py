"""What every GPU utilisation source of the GPU-idle culler shares (:mod:`.culler`).

A source samples GPUs by the names the ledger gives them and says what it could not read
once: the admin service samples every 30 s, and a GPU without a reading (a MIG instance,
another hub's GPU, a GPU no exporter publishes) or a source that does not answer would
otherwise fill the log with the same warning.
"""

import logging
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)


class UtilisationSource:
    """What every source shares: ``sample`` and the GPUs it found lost, and logging that
    says a thing once: a GPU without a reading, a source that cannot be read.

    ``lost`` holds the GPUs the last sample found lost (fallen off the bus); a source
    that cannot tell leaves it empty.
    """

    def __init__(self):
        self.lost: set[str] = set()
        self._unknown: set[str] = set()  # GPUs already warned about
        self._unreadable = False  # the source as a whole, already warned about

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        """Each GPU's utilisation in percent, None where unknown."""
        raise NotImplementedError

    def unknown(self, uuid: str, why: str) -> None:
        """``uuid`` has no reading: a warning the first time, then debug until it has one."""
        level = logging.DEBUG if uuid in self._unknown else logging.WARNING
        log.log(level, "No GPU utilisation for %s (%s): it counts as busy", uuid, why)
        self._unknown.add(uuid)

    def known(self, uuid: str) -> None:
        """``uuid`` has a reading again: losing it later warns again."""
        self._unknown.discard(uuid)

    def unreadable(self, what: str, why: str) -> None:
        """The whole source failed: a warning the first time, then debug until it answers."""
        level = logging.DEBUG if self._unreadable else logging.WARNING
        log.log(level, "%s cannot be read (%s): no GPU counts as idle, none is culled", what, why)
        self._unreadable = True

    def readable(self, what: str) -> None:
        """The source answered; after a failure that was warned about, say so once."""
        if self._unreadable:
            log.info("%s answers again: GPU-idle culling resumes", what)
        self._unreadable = False

    def readings(
        self, uuids: Iterable[str], values: Mapping[str, float | None], why: str
    ) -> dict[str, float | None]:
        """``values`` for ``uuids``, None (and said once) for each GPU it lacks."""
        result = {}
        for uuid in uuids:
            value = values.get(uuid)
            if value is None:
                self.unknown(uuid, why)
            else:
                self.known(uuid)
            result[uuid] = value
        return result
