"""Admin adjustments of one user's limits: quota and budget overrides, one-off top-ups.

An admin may give one user another GPU quota (GPUs at once) or another GPU-hour budget per
period than their groups give, and add GPU-hours to the current period only ("+5
GPU-hours this week, reason: thesis deadline"). Each adjustment is a row of
``gpu_adjustments`` in the usage ledger's database, with who made it, when and why; rows
are never changed, so the table is the history. The latest ``quota`` (``budget``) row of a
user is in force; one whose value is NULL ends the override (back to the groups' limit).
A ``top-up`` counts in the budget period that contains ``period_start``.

The pure part (:func:`in_force`, :func:`adjusted_budget`, :func:`adjusted_quota`,
:func:`check_adjustment`) takes plain rows; :class:`Adjustments` stores them, with a schema
of its own (``gpuspawner_adjustments_schema``), upgraded on open like the ledger's.
"""

import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Float, Integer, String, Text, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session

from ..policy.budget import Budget, hours_text
from ..policy.quota import GpuLimit

log = logging.getLogger(__name__)

KINDS = ("quota", "budget", "top-up")
SCHEMA_VERSION = 1
MAX_HOURS = 100_000.0  # a budget or top-up beyond this is a typing error, not a plan
MAX_GPUS = 1024


@dataclass(frozen=True)
class Adjustment:
    """One admin adjustment (``value``: GPUs, GPU-hours, or None: the override ends)."""

    user: str
    kind: str
    value: float | None
    reason: str
    by: str
    at: datetime
    period_start: datetime | None = None  # a top-up's budget period
    id: int | None = None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "user": self.user,
            "kind": self.kind,
            "value": self.value,
            "text": self.text,
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat(timespec="seconds"),
            "period_start": self.period_start.isoformat() if self.period_start else None,
        }

    @property
    def text(self) -> str:
        """What the adjustment did, in words: "quota 2 GPUs", "+5 GPU-hours this period"."""
        if self.kind == "top-up":
            return "+%s this period" % hours_text(self.value or 0)
        if self.value is None:
            return "%s override ended" % self.kind
        if self.kind == "quota":
            count = int(self.value)
            return "quota %d GPU%s at once" % (count, "" if count == 1 else "s")
        return "budget %s per period" % hours_text(self.value)


@dataclass(frozen=True)
class InForce:
    """What one user's adjustments change now: None where nothing is overridden."""

    quota: Adjustment | None = None
    budget: Adjustment | None = None
    top_ups: tuple[Adjustment, ...] = ()

    @property
    def top_up_hours(self) -> float:
        return sum(a.value or 0.0 for a in self.top_ups)


def in_force(adjustments: Iterable[Adjustment], period_start: datetime) -> InForce:
    """The overrides in force (the latest row of each kind, unless it ends the override) and
    the top-ups of the period starting at ``period_start``; ``adjustments`` of one user."""
    latest: dict[str, Adjustment] = {}
    top_ups = []
    for item in sorted(adjustments, key=lambda a: (a.at, a.id or 0)):
        if item.kind == "top-up":
            if item.period_start == period_start:
                top_ups.append(item)
        else:
            latest[item.kind] = item
    quota, budget = latest.get("quota"), latest.get("budget")
    return InForce(
        quota=quota if quota is not None and quota.value is not None else None,
        budget=budget if budget is not None and budget.value is not None else None,
        top_ups=tuple(top_ups),
    )


def adjusted_budget(budget: Budget, force: InForce) -> Budget:
    """``budget`` (the groups') with the user's override and this period's top-ups."""
    hours, source = budget.hours, budget.source
    if force.budget is not None:
        hours, source = force.budget.value, "set for you by %s" % force.budget.by
    if force.top_ups and hours is not None:
        hours += force.top_up_hours
        source += " + %s top-up" % hours_text(force.top_up_hours)
    return Budget(hours, source)


def adjusted_quota(limit: GpuLimit, force: InForce) -> GpuLimit:
    """``limit`` (the groups') unless an admin set this user's quota."""
    if force.quota is None:
        return limit
    return GpuLimit(int(force.quota.value), "set for you by %s" % force.quota.by)


def check_adjustment(kind, value, reason) -> tuple[str, float | None, str]:
    """The cleaned (kind, value, reason) of an admin's input; ValueError with the sentence
    saying what is wrong (the service answers it with 400)."""
    if kind not in KINDS:
        raise ValueError("kind must be one of %s, not %r." % (", ".join(KINDS), kind))
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("Give a reason: it is shown to the user and kept in the ledger.")
    reason = reason.strip()
    if len(reason) > 500:
        raise ValueError("The reason must be at most 500 characters, not %d." % len(reason))
    if value is None or (isinstance(value, str) and not value.strip()):
        if kind == "top-up":
            raise ValueError("A top-up needs a number of GPU-hours, such as 5.")
        return kind, None, reason
    if isinstance(value, bool):
        raise ValueError("The value must be a number, not %r." % value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("The value must be a number, not %r." % (value,)) from None
    if not math.isfinite(number):
        raise ValueError("The value must be a finite number, not %r." % (value,))
    if kind == "quota":
        if number != int(number) or not 0 <= number <= MAX_GPUS:
            raise ValueError(
                "A quota is a whole number of GPUs from 0 to %d, not %s." % (MAX_GPUS, value)
            )
        return kind, float(int(number)), reason
    if kind == "top-up" and not 0 < number <= MAX_HOURS:
        raise ValueError(
            "A top-up must be more than 0 and at most %d GPU-hours, not %s." % (MAX_HOURS, value)
        )
    if kind == "budget" and not 0 <= number <= MAX_HOURS:
        raise ValueError(
            "A budget must be from 0 to %d GPU-hours, not %s." % (MAX_HOURS, value)
        )
    return kind, number, reason


# --- storage ---


class Base(DeclarativeBase):
    pass


class AdjustmentRow(Base):
    __tablename__ = "gpu_adjustments"
    id = Column(Integer, primary_key=True)
    user = Column(String(255), nullable=False, index=True)
    kind = Column(String(16), nullable=False)
    value = Column(Float, nullable=True)
    period_start = Column(DateTime, nullable=True)
    reason = Column(Text, nullable=False)
    made_by = Column(String(255), nullable=False)
    made_at = Column(DateTime, nullable=False, index=True)


def _v1(connection) -> None:
    """Schema 1: the adjustments table."""
    AdjustmentRow.__table__.create(connection)


MIGRATIONS = [(1, _v1)]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _adjustment(row: AdjustmentRow) -> Adjustment:
    return Adjustment(
        user=row.user, kind=row.kind, value=row.value, reason=row.reason, by=row.made_by,
        at=_utc(row.made_at), period_start=_utc(row.period_start), id=row.id,
    )  # fmt: skip


class Adjustments:
    """The adjustments table in the database of ``engine`` (the ledger's), upgraded on open."""

    def __init__(self, engine):
        self.engine = engine
        self.upgrade()

    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("gpuspawner_adjustments_schema"):
                return 0
            return connection.execute(
                text("SELECT version FROM gpuspawner_adjustments_schema")
            ).scalar_one()

    def upgrade(self) -> int:
        """Apply the migrations this database lacks; safe when another process does it too."""
        for attempt in range(5):
            try:
                return self._upgrade()
            except DBAPIError:
                if attempt == 4:
                    raise
                log.info("Adjustments schema changed under us (another process); retrying")
                time.sleep(0.2 * (attempt + 1))
        return self.schema_version()

    def _upgrade(self) -> int:
        version = self.schema_version()
        if version == 0:
            with self.engine.begin() as connection:
                connection.execute(text(
                    "CREATE TABLE IF NOT EXISTS gpuspawner_adjustments_schema"
                    " (version INTEGER NOT NULL)"
                ))  # fmt: skip
                connection.execute(text(
                    "INSERT INTO gpuspawner_adjustments_schema (version) SELECT 0 WHERE NOT"
                    " EXISTS (SELECT 1 FROM gpuspawner_adjustments_schema)"
                ))  # fmt: skip
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                "The adjustments table has schema %d, newer than this gpuspawner's %d:"
                " upgrade gpuspawner." % (version, SCHEMA_VERSION)
            )
        for target, migrate in MIGRATIONS:
            if target <= version:
                continue
            with self.engine.begin() as connection:
                lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""
                current = connection.execute(
                    text("SELECT version FROM gpuspawner_adjustments_schema" + lock)
                ).scalar_one()
                if current >= target:
                    continue
                migrate(connection)
                connection.execute(
                    text("UPDATE gpuspawner_adjustments_schema SET version = :v"), {"v": target}
                )
            log.info("Adjustments table upgraded to schema %d", target)
            version = target
        return version

    def add(
        self,
        user: str,
        kind: str,
        value: float | None,
        reason: str,
        by: str,
        at: datetime,
        period_start: datetime | None = None,
    ) -> Adjustment:
        """Record one adjustment (checked by :func:`check_adjustment` first)."""
        kind, value, reason = check_adjustment(kind, value, reason)
        if kind == "top-up" and period_start is None:
            raise ValueError("A top-up needs the start of the period it counts in.")
        row = AdjustmentRow(
            user=user, kind=kind, value=value, reason=reason, made_by=by, made_at=_naive(at),
            period_start=_naive(period_start) if kind == "top-up" else None,
        )  # fmt: skip
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            made = _adjustment(row)
        log.info("Adjustment by %s for %s: %s (%s)", by, user, made.text, reason)
        return made

    def history(self, user: str | None = None) -> list[Adjustment]:
        """Every adjustment (of ``user``), oldest first."""
        query = select(AdjustmentRow).order_by(AdjustmentRow.made_at, AdjustmentRow.id)
        if user is not None:
            query = query.where(AdjustmentRow.user == user)
        with Session(self.engine) as session:
            return [_adjustment(row) for row in session.scalars(query)]

    def in_force(self, user: str, period_start: datetime) -> InForce:
        return in_force(self.history(user), period_start)

    def in_force_by_user(
        self, users: Sequence[str] | None, period_start: datetime
    ) -> dict[str, InForce]:
        """What is in force for each user with adjustments (of ``users``; None: all)."""
        by_user: dict[str, list[Adjustment]] = {}
        for item in self.history():
            if users is None or item.user in users:
                by_user.setdefault(item.user, []).append(item)
        return {user: in_force(items, period_start) for user, items in by_user.items()}


_stores: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def adjustments_of(ledger) -> Adjustments:
    """The adjustments stored next to ``ledger`` (one store per ledger, upgraded once)."""
    with _stores_lock:
        store = _stores.get(ledger)
        if store is None:
            store = _stores[ledger] = Adjustments(ledger.engine)
        return store
