"""The usage ledger: every interval a server held a GPU, in a database through SQLAlchemy.

sqlite by default, any SQLAlchemy URL (PostgreSQL) in production. The schema is
versioned: :data:`MIGRATIONS` are applied in order on open, each in its own
transaction, and the version reached is kept in ``gpuspawner_schema``.

Who writes what: the hub opens an interval per GPU when a server starts holding it,
closes it when the server stops, fails or dies, and reconciles open intervals with the
engine's listing (a container gone while the hub was down is closed at the last time
it was seen, so usage is neither lost nor counted twice). The admin service reads
intervals, writes notices (budget warnings, culls) and marks why it is about to stop a
server, so that the interval records the reason when the hub closes it.

Where the engine picks the devices (Kubernetes), the hub names a GPU after its pod
(``<pod>/<resource>#<i>``) and that name stays the interval's key (``gpu_uuid``: the hub
closes and reconciles by it). Once the admin service learns which device the pod really
got (from DCGM exporter's series in Prometheus), it records the device's UUID and type in
``device_uuid`` / ``device_type``, once (:meth:`Ledger.resolve_devices`). Readers
(:func:`as_interval`, the CSV) then see the device, so GPU-type weights apply to the whole
interval: the pod had that device from its start.

The hub's per-server writes (:meth:`Ledger.open`, :meth:`Ledger.close`) are group-committed:
a write waits for the transaction that carries it, and every write queued while one
transaction commits goes into the next one. Fifty servers starting at once cost a few
transactions, not fifty, and nothing is deferred: when ``open`` returns, the interval is
committed, so a hub killed right after a spawn finds it on restart.
"""

import asyncio
import csv
import io
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    String,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session

from ..policy.allocation import Holding
from ..policy.budget import Interval
from ..policy.inventory import Gpu

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
RECONCILE_GRACE = timedelta(seconds=10)  # an interval this young may not be in a listing yet


class Base(DeclarativeBase):
    pass


class GpuInterval(Base):
    """One GPU held by one server, from ``started`` to ``ended`` (NULL while held). Times in UTC."""

    __tablename__ = "gpu_intervals"
    id = Column(Integer, primary_key=True)
    user = Column(String(255), nullable=False, index=True)
    server = Column(String(255), nullable=False)
    gpu_uuid = Column(String(255), nullable=False)
    gpu_name = Column(String(255), nullable=False)
    started = Column(DateTime, nullable=False, index=True)
    ended = Column(DateTime, nullable=True, index=True)
    last_seen = Column(DateTime, nullable=False)
    end_reason = Column(String(64), nullable=True)  # schema 2
    pending_end_reason = Column(String(64), nullable=True)  # schema 2
    # the device the engine assigned, learned after the interval opened (schema 3)
    device_uuid = Column(String(255), nullable=True)
    device_type = Column(String(255), nullable=True)
    # a slot of a GPU shared by this many servers, charged 1/N (schema 4; NULL: whole)
    shared_by = Column(Integer, nullable=True)

    @property
    def device(self) -> str:
        """The GPU's UUID: the device assigned where known, else the hub's name for it."""
        return self.device_uuid or self.gpu_uuid

    @property
    def device_name(self) -> str:
        """The GPU's type: the assigned device's where known, else the hub's."""
        return self.device_type or self.gpu_name


class Notice(Base):
    """Something an admin should be able to find later: a budget warning, a cull. Schema 2."""

    __tablename__ = "gpu_notices"
    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, index=True)
    user = Column(String(255), nullable=False, index=True)
    server = Column(String(255), nullable=False)
    kind = Column(String(64), nullable=False)
    message = Column(Text, nullable=False)


def _v1(connection) -> None:
    """Schema 1: the intervals table."""
    connection.execute(
        text(
            'CREATE TABLE gpu_intervals (id %s, "user" VARCHAR(255) NOT NULL,'
            " server VARCHAR(255) NOT NULL,"
            " gpu_uuid VARCHAR(255) NOT NULL, gpu_name VARCHAR(255) NOT NULL,"
            " started TIMESTAMP NOT NULL, ended TIMESTAMP, last_seen TIMESTAMP NOT NULL)"
            % _serial(connection)
        )
    )
    for column in ("user", "started", "ended"):
        connection.execute(
            text('CREATE INDEX ix_gpu_intervals_%s ON gpu_intervals ("%s")' % (column, column))
        )


def _v2(connection) -> None:
    """Schema 2: why an interval ended, the reason an admin stop is about to give, and notices."""
    connection.execute(text("ALTER TABLE gpu_intervals ADD COLUMN end_reason VARCHAR(64)"))
    connection.execute(text("ALTER TABLE gpu_intervals ADD COLUMN pending_end_reason VARCHAR(64)"))
    connection.execute(
        text("UPDATE gpu_intervals SET end_reason = 'stopped' WHERE ended IS NOT NULL")
    )
    Notice.__table__.create(connection)


def _v3(connection) -> None:
    """Schema 3: the device a GPU named after its pod really is, once known."""
    connection.execute(text("ALTER TABLE gpu_intervals ADD COLUMN device_uuid VARCHAR(255)"))
    connection.execute(text("ALTER TABLE gpu_intervals ADD COLUMN device_type VARCHAR(255)"))


def _serial(connection) -> str:
    if connection.dialect.name == "postgresql":
        return "SERIAL PRIMARY KEY"
    return "INTEGER NOT NULL PRIMARY KEY"


def _v4(connection) -> None:
    """Schema 4: the share of a slot of a shared GPU (NULL for a whole GPU)."""
    connection.execute(text("ALTER TABLE gpu_intervals ADD COLUMN shared_by INTEGER"))


MIGRATIONS = [(1, _v1), (2, _v2), (3, _v3), (4, _v4)]


def _utc(moment: datetime | None) -> datetime | None:
    """Stored naive UTC -> aware UTC."""
    if moment is None:
        return None
    return (
        moment.replace(tzinfo=timezone.utc)
        if moment.tzinfo is None
        else moment.astimezone(timezone.utc)
    )


def _naive(moment: datetime) -> datetime:
    """Aware -> naive UTC, for storage."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def as_interval(row: GpuInterval) -> Interval:
    """The interval as budgets and reports read it: of the device assigned, where known."""
    return Interval(
        row.user, row.server, row.device, row.device_name, _utc(row.started), _utc(row.ended),
        row.shared_by or 1,
    )  # fmt: skip


class _QueuedWrite:
    """One caller's write waiting for its group transaction, then its outcome."""

    __slots__ = ("write", "args", "done", "result", "error", "future")

    def __init__(self, write: Callable[..., int], args: tuple):
        self.write = write
        self.args = args
        self.future: asyncio.Future | None = None  # a coroutine's write: its caller waits here
        self.done = False
        self.result = 0
        self.error: BaseException | None = None

    def finish(self, result: int = 0, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


def _open(session: Session, user: str, server: str, gpus: tuple[Gpu, ...], at: datetime) -> int:
    """Add an interval for each of ``gpus`` this server has none open for (in ``session``)."""
    already = set(
        session.scalars(
            select(GpuInterval.gpu_uuid).where(
                GpuInterval.user == user,
                GpuInterval.server == server,
                GpuInterval.gpu_uuid.in_([gpu.uuid for gpu in gpus]),
                GpuInterval.ended.is_(None),
            )
        )
    )
    rows = []
    for gpu in gpus:
        if gpu.uuid not in already:
            already.add(gpu.uuid)
            rows.append(
                {
                    "user": user,
                    "server": server,
                    "gpu_uuid": gpu.uuid,
                    "gpu_name": gpu.name,
                    "started": _naive(at),
                    "last_seen": _naive(at),
                    "shared_by": gpu.shared_by if gpu.shared_by > 1 else None,
                }
            )
    if rows:
        session.execute(insert(GpuInterval), rows)
    return len(rows)


def _close(
    session: Session, user: str, server: str, uuids: tuple[str, ...], at: datetime, reason: str
) -> int:
    """End this server's open intervals of ``uuids`` at ``at`` (in ``session``)."""
    rows = session.scalars(
        select(GpuInterval).where(
            GpuInterval.user == user,
            GpuInterval.server == server,
            GpuInterval.gpu_uuid.in_(uuids),
            GpuInterval.ended.is_(None),
        )
    ).all()
    for row in rows:
        row.ended = max(_naive(at), row.started)
        row.last_seen = row.ended
        row.end_reason = row.pending_end_reason or reason
    session.flush()  # the next write of this group transaction sees these
    return len(rows)


class Ledger:
    """The usage ledger in the database at ``url``, upgraded to the latest schema on open."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        # one writer at a time in this process: a spawn's open and a listing's reconcile
        # both read-then-write and run in worker threads
        self._write_lock = threading.Lock()
        # the group commit of open/close: writes queue here; one caller at a time commits
        # everything queued so far in one transaction (see _write)
        self._queued: list[_QueuedWrite] = []
        self._committing = False
        self._queue_changed = threading.Condition()
        self.transactions = 0  # group transactions committed, for benchmarks and tests
        # the coroutines' writes, per event loop: queued, and the task committing them
        self._loop_queued: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._loop_committing: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.engine = create_engine(url, future=True, **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.upgrade()

    # --- schema ---

    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("gpuspawner_schema"):
                return 0
            return connection.execute(text("SELECT version FROM gpuspawner_schema")).scalar_one()

    def upgrade(self) -> int:
        """Apply the migrations this database lacks; safe when another process does it too."""
        for attempt in range(3):
            try:
                return self._upgrade()
            except DBAPIError:
                if attempt == 2:
                    raise
                log.info("Ledger schema changed under us (another process upgrading); retrying")
        return self.schema_version()

    def _upgrade(self) -> int:
        version = self.schema_version()
        if version == 0:
            with self.engine.begin() as connection:
                connection.execute(
                    text("CREATE TABLE gpuspawner_schema (version INTEGER NOT NULL)")
                )
                connection.execute(text("INSERT INTO gpuspawner_schema (version) VALUES (0)"))
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                "The usage ledger at %s has schema %d, newer than this gpuspawner's %d:"
                " upgrade gpuspawner."
                % (self.engine.url.render_as_string(hide_password=True), version, SCHEMA_VERSION)
            )
        for target, migrate in MIGRATIONS:
            if target <= version:
                continue
            with self.engine.begin() as connection:
                current = connection.execute(
                    text("SELECT version FROM gpuspawner_schema")
                ).scalar_one()
                if current >= target:
                    continue
                migrate(connection)
                connection.execute(text("UPDATE gpuspawner_schema SET version = :v"), {"v": target})
            log.info("Usage ledger upgraded to schema %d", target)
            version = target
        return version

    # --- the hub's writes ---

    def open(self, user: str, server: str, gpus: Iterable[Gpu], at: datetime) -> int:
        """Open an interval per GPU, unless one is already open; returns how many were opened.

        Returns once the transaction that carries it is committed (a group commit).
        """
        return self._write(_open, user, server, tuple(gpus), at)

    def close(
        self, user: str, server: str, uuids: Iterable[str], at: datetime, reason: str = "stopped"
    ) -> int:
        """Close the open intervals of this server's ``uuids`` at ``at``; returns how many.

        Returns once the transaction that carries it is committed (a group commit).
        """
        uuids = tuple(uuids)
        if not uuids:
            return 0
        return self._write(_close, user, server, uuids, at, reason)

    async def open_async(self, user: str, server: str, gpus: Iterable[Gpu], at: datetime) -> int:
        """:meth:`open` from a coroutine, group-committed with the event loop's other writes."""
        return await self._write_async(_open, user, server, tuple(gpus), at)

    async def close_async(
        self, user: str, server: str, uuids: Iterable[str], at: datetime, reason: str = "stopped"
    ) -> int:
        """:meth:`close` from a coroutine, group-committed with the event loop's other writes."""
        uuids = tuple(uuids)
        if not uuids:
            return 0
        return await self._write_async(_close, user, server, uuids, at, reason)

    async def _write_async(self, write: Callable[..., int], *args) -> int:
        """Queue ``write`` for this event loop's committer and wait for its transaction.

        The committer task takes everything queued, commits it in a worker thread (one
        transaction) and starts over while anything is queued, so the writes of concurrent
        coroutines share transactions without a thread waiting for each.
        """
        loop = asyncio.get_running_loop()
        queued = _QueuedWrite(write, args)
        queued.future = loop.create_future()
        self._loop_queued.setdefault(loop, []).append(queued)
        if loop not in self._loop_committing:
            self._loop_committing[loop] = loop.create_task(self._commit_loop_queue(loop))
        return await queued.future

    async def _commit_loop_queue(self, loop) -> None:
        try:
            while self._loop_queued.get(loop):
                group = self._loop_queued.pop(loop)
                try:
                    await asyncio.to_thread(self._commit_group, group)
                except BaseException as e:
                    for queued in group:
                        if not queued.done:
                            queued.finish(error=e)
                    raise
                finally:
                    for queued in group:
                        if queued.done and not queued.future.done():
                            if queued.error is not None:
                                queued.future.set_exception(queued.error)
                            else:
                                queued.future.set_result(queued.result)
        finally:
            del self._loop_committing[loop]

    def _write(self, write: Callable[..., int], *args) -> int:
        """Run ``write(session, *args)`` in the next group transaction and return its result.

        The first caller to find no transaction committing takes everything queued (its own
        write and any others) and commits it; the others wait, and whoever finds their
        write still queued when that commit ends commits the next group. A write that fails
        is retried alone, so it fails only its own caller.
        """
        queued = _QueuedWrite(write, args)
        with self._queue_changed:
            self._queued.append(queued)
            while not queued.done:
                if self._committing:
                    self._queue_changed.wait()
                    continue
                self._committing = True
                group, self._queued = self._queued, []
                self._queue_changed.release()
                try:
                    self._commit_group(group)
                finally:
                    self._queue_changed.acquire()
                    self._committing = False
                    self._queue_changed.notify_all()
        if queued.error is not None:
            raise queued.error
        return queued.result

    def _commit_group(self, group: list[_QueuedWrite]) -> None:
        """Commit ``group`` in one transaction; on an error, each write in one of its own."""
        try:
            results = self._transaction(group)
        except Exception as e:
            if len(group) == 1:
                group[0].finish(error=e)
            else:
                for queued in group:
                    self._commit_group([queued])
            return
        except BaseException as e:  # interrupted: no caller may wait forever
            for queued in group:
                queued.finish(error=e)
            raise
        for queued, result in zip(group, results):
            queued.finish(result)

    def _transaction(self, group: list[_QueuedWrite]) -> list[int]:
        with self._write_lock, Session(self.engine) as session, session.begin():
            results = [queued.write(session, *queued.args) for queued in group]
        self.transactions += 1
        return results

    def reconcile(self, holdings: Iterable[Holding], at: datetime) -> tuple[int, int]:
        """Match open intervals with the engine's holdings listed at ``at``.

        Still held: ``last_seen`` moves to ``at``. Gone (the container or pod went away
        while no hub watched it): closed at its last sighting, reason "gone". Held but not
        in the ledger: opened at ``at``, named as the holding names its GPU, so GPU-type
        weights apply. Returns (closed, opened).
        """
        holdings = list(holdings)
        names = {gpu.uuid: gpu.name for h in holdings for gpu in h.gpus}
        shares = {gpu.uuid: gpu.shared_by for h in holdings for gpu in h.gpus if gpu.is_shared}
        held = {(h.user, h.server, uuid) for h in holdings for uuid in h.uuids}
        closed = opened = 0
        with self._write_lock, Session(self.engine) as session, session.begin():
            open_rows = session.scalars(
                select(GpuInterval).where(GpuInterval.ended.is_(None))
            ).all()
            seen = set()
            for row in open_rows:
                key = (row.user, row.server, row.gpu_uuid)
                if key in held:
                    row.last_seen = max(_naive(at), row.last_seen)
                    seen.add(key)
                elif _utc(row.started) < at - RECONCILE_GRACE:
                    row.ended = row.last_seen
                    row.end_reason = row.pending_end_reason or "gone"
                    closed += 1
                    log.info(
                        "Ledger: %s's server %r no longer holds %s;"
                        " interval closed at its last sighting %s",
                        row.user,
                        row.server,
                        row.gpu_uuid,
                        row.last_seen,
                    )
                else:
                    seen.add(key)
            for user, server, uuid in sorted(held - seen):
                session.add(
                    GpuInterval(
                        user=user,
                        server=server,
                        gpu_uuid=uuid,
                        gpu_name=names.get(uuid, "GPU"),
                        started=_naive(at),
                        last_seen=_naive(at),
                        shared_by=shares.get(uuid),
                    )
                )
                opened += 1
        return closed, opened

    # --- the admin service's writes ---

    def mark_pending_end(self, user: str, server: str, reason: str) -> None:
        """Say why this server is about to be stopped: its intervals will end with ``reason``."""
        with self.engine.begin() as connection:
            connection.execute(
                update(GpuInterval)
                .where(
                    GpuInterval.user == user,
                    GpuInterval.server == server,
                    GpuInterval.ended.is_(None),
                )
                .values(pending_end_reason=reason)
            )

    def unresolved_open(self) -> list[tuple[int, str]]:
        """(id, the hub's GPU name) of each open interval whose device is not recorded."""
        with Session(self.engine) as session:
            return [
                (row.id, row.gpu_uuid)
                for row in session.execute(
                    select(GpuInterval.id, GpuInterval.gpu_uuid)
                    .where(GpuInterval.ended.is_(None), GpuInterval.device_uuid.is_(None))
                    .order_by(GpuInterval.id)
                )
            ]

    def resolve_devices(self, devices: Mapping[int, tuple[str, str | None]]) -> int:
        """Record the device each interval's GPU really is: {id: (uuid, type or None)}.

        Once: an interval whose device is already recorded keeps it. The hub's name stays
        in ``gpu_uuid``, and without a type the hub's stays. Returns how many were recorded.
        """
        recorded = 0
        with self.engine.begin() as connection:
            for interval_id, (uuid, gpu_type) in sorted(devices.items()):
                values = {"device_uuid": uuid}
                if gpu_type:
                    values["device_type"] = gpu_type
                recorded += connection.execute(
                    update(GpuInterval)
                    .where(GpuInterval.id == interval_id, GpuInterval.device_uuid.is_(None))
                    .values(**values)
                ).rowcount
        return recorded

    def resolve_device(self, interval_id: int, uuid: str, gpu_type: str | None = None) -> bool:
        """:meth:`resolve_devices` of one interval; whether it was recorded now."""
        return self.resolve_devices({interval_id: (uuid, gpu_type)}) == 1

    def add_notice(self, user: str, server: str, kind: str, message: str, at: datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(Notice(at=_naive(at), user=user, server=server, kind=kind, message=message))

    def notices(self, since: datetime | None = None, kind: str | None = None) -> list[dict]:
        query = select(Notice).order_by(Notice.at, Notice.id)
        if since is not None:
            query = query.where(Notice.at >= _naive(since))
        if kind is not None:
            query = query.where(Notice.kind == kind)
        with Session(self.engine) as session:
            return [
                {
                    "at": _utc(n.at),
                    "user": n.user,
                    "server": n.server,
                    "kind": n.kind,
                    "message": n.message,
                }
                for n in session.scalars(query)
            ]

    # --- reads ---

    def intervals(
        self, start: datetime | None = None, end: datetime | None = None, user: str | None = None
    ) -> list[Interval]:
        """Intervals overlapping [start, end) (all when not given), oldest first."""
        return [as_interval(row) for row in self.rows(start, end, user)]

    def rows(
        self, start: datetime | None = None, end: datetime | None = None, user: str | None = None
    ) -> list[GpuInterval]:
        query = select(GpuInterval).order_by(GpuInterval.started, GpuInterval.id)
        if start is not None:
            query = query.where((GpuInterval.ended.is_(None)) | (GpuInterval.ended > _naive(start)))
        if end is not None:
            query = query.where(GpuInterval.started < _naive(end))
        if user is not None:
            query = query.where(GpuInterval.user == user)
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            session.expunge_all()
            return list(rows)

    def open_intervals(self) -> list[Interval]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(GpuInterval).where(GpuInterval.ended.is_(None)).order_by(GpuInterval.started)
            ).all()
            return [as_interval(row) for row in rows]

    def csv(self, start: datetime, end: datetime, now: datetime, user: str | None = None) -> str:
        """The ledger's intervals overlapping [start, end) (of ``user``) as CSV, times in UTC
        (ISO 8601)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "user",
                "server",
                "gpu_uuid",
                "gpu_name",
                "start",
                "end",
                "hours_in_range",
                "end_reason",
            ]
        )
        for row in self.rows(start, end, user):
            started, ended = _utc(row.started), _utc(row.ended)
            clipped = (min(ended or now, end) - max(started, start)).total_seconds() / 3600
            writer.writerow(
                [
                    row.user,
                    row.server,
                    row.device,
                    row.device_name,
                    started.isoformat(),
                    ended.isoformat() if ended else "",
                    "%.4f" % max(clipped, 0.0),
                    row.end_reason or "",
                ]
            )
        return out.getvalue()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # the hub and the admin service share the file: wait for each other's writes
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.close()
