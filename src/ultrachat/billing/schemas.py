"""Request and response bodies of the billing admin API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from ultrachat.billing.service import (
    MAX_PRICE_CENTS,
    BusinessMetrics,
    PlanView,
    SubscriptionView,
)


def _iso_text(value: Any) -> Any:
    # The model is strict (no coercion), but a JSON time is a string: accept only that.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time string, e.g. 2026-11-01T12:00:00Z")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


# An ISO 8601 time with a UTC offset (``Z`` or ``+01:00``), stored in UTC.
Moment = Annotated[
    AwareDatetime, Field(strict=False), BeforeValidator(_iso_text), AfterValidator(_to_utc)
]


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields and type coercion: typos fail loudly."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PlanCreate(StrictBody):
    name: str = Field(min_length=1, max_length=80)
    monthly_price_cents: int = Field(ge=0, le=MAX_PRICE_CENTS, description="Minor units (cents).")
    currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD or EUR."
    )


class SubscriptionCreate(StrictBody):
    plan_id: str = Field(min_length=1, max_length=36)
    customer: str = Field(min_length=1, max_length=120)
    started_at: Moment | None = Field(default=None, description="Default: now.")


class SubscriptionCancel(StrictBody):
    cancelled_at: Moment | None = Field(
        default=None, description="Default: now. Not before the subscription's started_at."
    )


class PlanOut(BaseModel):
    id: str
    name: str
    monthly_price_cents: int
    currency: str
    created_at: datetime
    archived_at: datetime | None


class PlanList(BaseModel):
    plans: list[PlanOut]


class SubscriptionOut(BaseModel):
    id: str
    plan_id: str
    customer: str
    monthly_price_cents: int = Field(description="The plan's price when subscribed.")
    currency: str
    started_at: datetime
    cancelled_at: datetime | None
    created_at: datetime


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class BusinessMetricsOut(BaseModel):
    at: datetime
    period_start: datetime
    active_subscriptions: int
    mrr_cents: int | None = Field(
        description="Monthly recurring revenue in minor units; null when the active "
        "subscriptions are in more than one currency (see mrr_cents_by_currency)."
    )
    currency: str | None = Field(description="The currency of mrr_cents; null when none or many.")
    mrr_cents_by_currency: dict[str, int]
    active_at_period_start: int
    cancelled_in_period: int
    churn_ratio: float | None = Field(
        description="cancelled_in_period / active_at_period_start; null when nothing was "
        "active at the start of the period."
    )


def plan_out(plan: PlanView) -> PlanOut:
    return PlanOut(
        id=plan.id,
        name=plan.name,
        monthly_price_cents=plan.monthly_price_cents,
        currency=plan.currency,
        created_at=plan.created_at,
        archived_at=plan.archived_at,
    )


def subscription_out(subscription: SubscriptionView) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        plan_id=subscription.plan_id,
        customer=subscription.customer,
        monthly_price_cents=subscription.monthly_price_cents,
        currency=subscription.currency,
        started_at=subscription.started_at,
        cancelled_at=subscription.cancelled_at,
        created_at=subscription.created_at,
    )


def metrics_out(metrics: BusinessMetrics) -> BusinessMetricsOut:
    return BusinessMetricsOut(
        at=metrics.at,
        period_start=metrics.period_start,
        active_subscriptions=metrics.active_subscriptions,
        mrr_cents=metrics.mrr_cents,
        currency=metrics.currency,
        mrr_cents_by_currency=dict(metrics.mrr_cents_by_currency),
        active_at_period_start=metrics.active_at_period_start,
        cancelled_in_period=metrics.cancelled_in_period,
        churn_ratio=metrics.churn_ratio,
    )
