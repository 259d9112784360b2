"""Plans and subscriptions, managed by admins, and the business metrics computed from them.

Every change is recorded in the audit log right after it commits (docs/security.md). The
metrics are counted by the database (COUNT/SUM over the indexed time columns), never by
loading subscriptions into Python, and nothing is hard-coded: an empty deployment reports no
active subscriptions, no revenue and no churn ratio (docs/monitoring.md#business-metrics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ultrachat.audit import AuditLog
from ultrachat.billing.models import Plan, Subscription
from ultrachat.errors import Conflict, InvalidInput, NotFound
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import is_id

DEFAULT_PERIOD = timedelta(days=30)
MAX_PRICE_CENTS = 1_000_000_000  # 10 000 000.00 in the plan's currency
MAX_LIST = 1000
_CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217 alphabetic code


@dataclass(frozen=True)
class PlanView:
    id: str
    name: str
    monthly_price_cents: int
    currency: str
    created_at: datetime
    archived_at: datetime | None


@dataclass(frozen=True)
class SubscriptionView:
    id: str
    plan_id: str
    customer: str
    monthly_price_cents: int
    currency: str
    started_at: datetime
    cancelled_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class BusinessMetrics:
    """The business figures at ``at``, churn over the period ``(period_start, at]``.

    A subscription is active at ``t`` when ``started_at <= t`` and it is not cancelled by
    then (``cancelled_at`` is null or later than ``t``).
    """

    at: datetime
    period_start: datetime
    active_subscriptions: int
    # Monthly recurring revenue: the sum of the active subscriptions' monthly prices, in
    # minor units, per currency. ``mrr_cents`` is that sum when at most one currency is in
    # use (0 with no active subscription); None when several are, since cents of different
    # currencies do not add up: read ``mrr_cents_by_currency`` then.
    mrr_cents: int | None
    currency: str | None
    mrr_cents_by_currency: dict[str, int]
    active_at_period_start: int
    cancelled_in_period: int
    # cancelled_in_period / active_at_period_start; None when nothing was active at the start.
    churn_ratio: float | None


def active_at(moment: datetime) -> ColumnElement[bool]:
    """SQL: the subscription is active at ``moment``."""
    return and_(
        Subscription.started_at <= moment,
        or_(Subscription.cancelled_at.is_(None), Subscription.cancelled_at > moment),
    )


def _text(name: str, value: str, limit: int) -> str:
    # Stored as given and shown to people: no control characters (PostgreSQL refuses NUL).
    if not 1 <= len(value) <= limit:
        raise InvalidInput(f"{name}: must be 1 to {limit} characters")
    if not value.strip():
        raise InvalidInput(f"{name}: must not be blank")
    if not value.isprintable():
        raise InvalidInput(f"{name}: must not contain control characters")
    return value


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{name}: a time needs a timezone (UTC offset)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name}: time out of range") from None


def _plan_view(plan: Plan) -> PlanView:
    return PlanView(
        id=plan.id,
        name=plan.name,
        monthly_price_cents=plan.monthly_price_cents,
        currency=plan.currency,
        created_at=plan.created_at,
        archived_at=plan.archived_at,
    )


def _subscription_view(subscription: Subscription, currency: str) -> SubscriptionView:
    return SubscriptionView(
        id=subscription.id,
        plan_id=subscription.plan_id,
        customer=subscription.customer,
        monthly_price_cents=subscription.monthly_price_cents,
        currency=currency,
        started_at=subscription.started_at,
        cancelled_at=subscription.cancelled_at,
        created_at=subscription.created_at,
    )


class BillingService:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    # Plans

    async def create_plan(
        self,
        name: str,
        monthly_price_cents: int,
        currency: str = "USD",
        *,
        actor_id: str | None = None,
    ) -> PlanView:
        name = _text("name", name, 80)
        if not 0 <= monthly_price_cents <= MAX_PRICE_CENTS:
            raise InvalidInput(f"monthly_price_cents: must be 0 to {MAX_PRICE_CENTS}")
        if _CURRENCY.fullmatch(currency) is None:
            raise InvalidInput("currency: an ISO 4217 code, three uppercase letters (USD)")
        plan = Plan(
            id=new_id(),
            name=name,
            monthly_price_cents=monthly_price_cents,
            currency=currency,
            created_at=datetime.now(UTC),
            archived_at=None,
        )
        try:
            async with self._db.transaction() as session:
                taken = await session.scalar(select(Plan.id).where(Plan.name == name))
                if taken is not None:
                    raise Conflict(f"a plan named {name!r} already exists")
                session.add(plan)
        except IntegrityError:  # the same name, created concurrently
            raise Conflict(f"a plan named {name!r} already exists") from None
        await self._record(
            "billing.plan_created",
            actor_id,
            "plan",
            plan.id,
            {"name": name, "monthly_price_cents": monthly_price_cents, "currency": currency},
        )
        return _plan_view(plan)

    async def list_plans(self, include_archived: bool = True) -> list[PlanView]:
        stmt = select(Plan).order_by(Plan.created_at, Plan.id)
        if not include_archived:
            stmt = stmt.where(Plan.archived_at.is_(None))
        async with self._db.reader() as session:
            return [_plan_view(p) for p in (await session.scalars(stmt)).all()]

    async def archive_plan(self, plan_id: str, *, actor_id: str | None = None) -> PlanView:
        """No new subscriptions on the plan; its existing subscriptions carry on."""
        if not is_id(plan_id):
            raise NotFound("plan not found")
        async with self._db.transaction() as session:
            plan = await session.get(Plan, plan_id, with_for_update=True)
            if plan is None:
                raise NotFound("plan not found")
            if plan.archived_at is not None:
                raise Conflict("the plan is already archived")
            plan.archived_at = datetime.now(UTC)
        await self._record("billing.plan_archived", actor_id, "plan", plan_id, {"name": plan.name})
        return _plan_view(plan)

    # Subscriptions

    async def create_subscription(
        self,
        plan_id: str,
        customer: str,
        started_at: datetime | None = None,
        *,
        actor_id: str | None = None,
    ) -> SubscriptionView:
        """Subscribe ``customer`` to the plan from ``started_at`` (default now) at its price."""
        customer = _text("customer", customer, 120)
        start = datetime.now(UTC) if started_at is None else _utc("started_at", started_at)
        if not is_id(plan_id):
            raise NotFound("plan not found")
        async with self._db.transaction() as session:
            # Locked so that an archive cannot slip in between the check and the insert.
            plan = await session.get(Plan, plan_id, with_for_update=True)
            if plan is None:
                raise NotFound("plan not found")
            if plan.archived_at is not None:
                raise Conflict("the plan is archived: it takes no new subscriptions")
            subscription = Subscription(
                id=new_id(),
                plan_id=plan.id,
                customer=customer,
                monthly_price_cents=plan.monthly_price_cents,  # the price at subscribe time
                started_at=start,
                cancelled_at=None,
                created_at=datetime.now(UTC),
            )
            session.add(subscription)
            currency = plan.currency
        await self._record(
            "billing.subscription_created",
            actor_id,
            "subscription",
            subscription.id,
            {
                "plan_id": plan_id,
                "customer": customer,
                "monthly_price_cents": subscription.monthly_price_cents,
                "currency": currency,
                "started_at": start.isoformat(),
            },
        )
        return _subscription_view(subscription, currency)

    async def cancel_subscription(
        self, subscription_id: str, at: datetime | None = None, *, actor_id: str | None = None
    ) -> SubscriptionView:
        """End the subscription at ``at`` (default now): it is no longer active from then on.

        Cancelling twice is a conflict (the first cancellation stands); a time before the
        start is invalid.
        """
        moment = datetime.now(UTC) if at is None else _utc("cancelled_at", at)
        if not is_id(subscription_id):
            raise NotFound("subscription not found")
        async with self._db.transaction() as session:
            # One conditional UPDATE: of two concurrent cancels exactly one matches the row.
            result = await session.execute(
                update(Subscription)
                .where(
                    Subscription.id == subscription_id,
                    Subscription.cancelled_at.is_(None),
                    Subscription.started_at <= moment,
                )
                .values(cancelled_at=moment)
                .execution_options(synchronize_session=False)
            )
            changed = getattr(result, "rowcount", 0) == 1
            row = (
                await session.execute(
                    select(Subscription, Plan.currency)
                    .join(Plan, Plan.id == Subscription.plan_id)
                    .where(Subscription.id == subscription_id)
                )
            ).one_or_none()
        if row is None:
            raise NotFound("subscription not found")
        subscription, currency = row
        if not changed:
            if subscription.cancelled_at is not None:
                raise Conflict("the subscription is already cancelled")
            raise InvalidInput("cancelled_at: must not be before the subscription's started_at")
        await self._record(
            "billing.subscription_cancelled",
            actor_id,
            "subscription",
            subscription_id,
            {
                "plan_id": subscription.plan_id,
                "customer": subscription.customer,
                "cancelled_at": moment.isoformat(),
            },
        )
        return _subscription_view(subscription, currency)

    async def list_subscriptions(
        self, active_only: bool = False, limit: int = 100
    ) -> list[SubscriptionView]:
        """Newest start first; ``active_only``: those active now."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit: must be 1 to {MAX_LIST}")
        stmt = (
            select(Subscription, Plan.currency)
            .join(Plan, Plan.id == Subscription.plan_id)
            .order_by(Subscription.started_at.desc(), Subscription.id.desc())
            .limit(limit)
        )
        if active_only:
            stmt = stmt.where(active_at(datetime.now(UTC)))
        async with self._db.reader() as session:
            rows = (await session.execute(stmt)).all()
        return [_subscription_view(s, currency) for s, currency in rows]

    # Metrics

    async def business_metrics(
        self, at: datetime | None = None, period: timedelta = DEFAULT_PERIOD
    ) -> BusinessMetrics:
        """Active subscriptions and MRR at ``at`` (default now); churn over ``period`` to it.

        churn = subscriptions cancelled in ``(at - period, at]`` among those active at
        ``at - period``, divided by the number active at ``at - period``. Subscriptions that
        start within the period do not count towards churn, even if cancelled in it.
        """
        moment = datetime.now(UTC) if at is None else _utc("at", at)
        if period <= timedelta(0):
            raise InvalidInput("period: must be positive")
        try:
            start = moment - period
        except OverflowError:
            raise InvalidInput("period: reaches before the earliest time") from None
        revenue = (
            select(Plan.currency, func.count(), func.sum(Subscription.monthly_price_cents))
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(active_at(moment))
            .group_by(Plan.currency)
        )
        cancelled = and_(
            Subscription.cancelled_at.is_not(None), Subscription.cancelled_at <= moment
        )
        churn = select(func.count(), func.count(case((cancelled, 1)))).where(active_at(start))
        async with self._db.reader() as session:
            by_currency = (await session.execute(revenue)).all()
            at_start, gone = (await session.execute(churn)).one()
        mrr = {str(currency): int(total or 0) for currency, _, total in by_currency}
        active = sum(int(count) for _, count, _ in by_currency)
        currencies = sorted(mrr)
        # 0 of 0 is not "0% churn": with no subscriptions at the start of the period there is
        # no ratio to report, and a 0 would read as a perfect month.
        ratio = int(gone) / int(at_start) if at_start else None
        return BusinessMetrics(
            at=moment,
            period_start=start,
            active_subscriptions=active,
            mrr_cents=sum(mrr.values()) if len(currencies) <= 1 else None,
            currency=currencies[0] if len(currencies) == 1 else None,
            mrr_cents_by_currency=mrr,
            active_at_period_start=int(at_start),
            cancelled_in_period=int(gone),
            churn_ratio=ratio,
        )

    async def _record(
        self,
        event: str,
        actor_id: str | None,
        target_type: str,
        target_id: str,
        details: dict[str, Any],
    ) -> None:
        await self._audit.record(
            event,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
