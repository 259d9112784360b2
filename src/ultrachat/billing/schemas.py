"""Request and response bodies of the billing admin API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from ultrachat.billing.service import MAX_PRICE_CENTS


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


class ViewOut(BaseModel):
    """A response read straight off the service's view (a dataclass), attribute by attribute."""

    model_config = ConfigDict(from_attributes=True)


class PlanOut(ViewOut):
    id: str
    name: str
    monthly_price_cents: int
    currency: str
    created_at: datetime
    archived_at: datetime | None


class PlanList(BaseModel):
    plans: list[PlanOut]


class SubscriptionOut(ViewOut):
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


class BusinessMetricsOut(ViewOut):
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
