"""Business metrics computed from known subscriptions, each on a fresh deployment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.billing.conftest import Deployment
from ultrachat.billing.models import Plan
from ultrachat.errors import InvalidInput
from ultrachat.storage import Database

PLANS = "/api/v1/admin/plans"
SUBSCRIPTIONS = "/api/v1/admin/subscriptions"
BUSINESS = "/api/v1/admin/business"

AT = datetime(2024, 3, 31, tzinfo=UTC)  # the period is (2024-03-01, 2024-03-31]
PERIOD_START = datetime(2024, 3, 1, tzinfo=UTC)

# (plan, started_at, cancelled_at or None); Basic is 10.00, Pro 25.00.
HISTORY: dict[str, tuple[str, str, str | None]] = {
    # Active at the period's start (4):
    "a": ("basic", "2024-01-01T00:00:00Z", None),  # still active at AT
    "b": ("pro", "2024-01-15T00:00:00Z", "2024-03-10T00:00:00Z"),  # churned
    "c": ("pro", "2024-02-01T00:00:00Z", "2024-03-31T00:00:00Z"),  # churned at AT exactly
    "i": ("basic", "2023-12-01T00:00:00Z", "2024-03-15T09:30:00+02:00"),  # churned
    # Not active at the start, so not in the churn ratio:
    "d": ("basic", "2024-02-20T00:00:00Z", "2024-03-01T00:00:00Z"),  # ended at the start
    "e": ("basic", "2024-03-05T00:00:00Z", "2024-03-20T00:00:00Z"),  # began and ended within
    "f": ("pro", "2024-03-10T00:00:00Z", None),  # active at AT
    "g": ("basic", "2024-03-31T00:00:00Z", None),  # began at AT exactly: active
    "j": ("pro", "2024-03-02T00:00:00Z", "2024-04-10T00:00:00Z"),  # cancelled after AT
    "h": ("pro", "2024-04-15T00:00:00Z", None),  # after AT
}


async def post(deployment: Deployment, url: str, body: dict[str, Any] | None = None) -> Any:
    response = await deployment.client.post(url, json=body, headers=deployment.admin.headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def metrics(deployment: Deployment, **params: Any) -> dict[str, Any]:
    response = await deployment.client.get(
        BUSINESS, params=params, headers=deployment.admin.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def load_history(deployment: Deployment) -> None:
    basic = await post(deployment, PLANS, {"name": "Basic", "monthly_price_cents": 1000})
    pro = await post(deployment, PLANS, {"name": "Pro", "monthly_price_cents": 2500})
    plans = {"basic": basic["id"], "pro": pro["id"]}
    for customer, (plan, started, cancelled) in HISTORY.items():
        body = {"plan_id": plans[plan], "customer": customer, "started_at": started}
        sub = await post(deployment, SUBSCRIPTIONS, body)
        if cancelled is not None:
            await post(
                deployment, f"{SUBSCRIPTIONS}/{sub['id']}/cancel", {"cancelled_at": cancelled}
            )


async def test_a_fresh_deployment_reports_nothing(deployment: Deployment) -> None:
    """No hard-coded figures: no subscriptions means 0 active, 0 revenue, no churn ratio."""
    empty = {
        "active_subscriptions": 0,
        "mrr_cents": 0,
        "currency": None,
        "mrr_cents_by_currency": {},
        "active_at_period_start": 0,
        "cancelled_in_period": 0,
        "churn_ratio": None,
    }
    body = await metrics(deployment)
    assert {k: body[k] for k in empty} == empty
    # A plan alone is no revenue.
    await post(deployment, PLANS, {"name": "Basic", "monthly_price_cents": 1000})
    body = await metrics(deployment)
    assert {k: body[k] for k in empty} == empty


async def test_active_mrr_and_churn_from_known_history(deployment: Deployment) -> None:
    await load_history(deployment)

    body = await metrics(deployment, at="2024-03-31T00:00:00Z", period_days=30)
    assert datetime.fromisoformat(body["at"]) == AT
    assert datetime.fromisoformat(body["period_start"]) == PERIOD_START
    # Active at AT: a, g (Basic) and f, j (Pro).
    assert body["active_subscriptions"] == 4
    assert body["mrr_cents"] == 2 * 1000 + 2 * 2500 == 7000
    assert (body["currency"], body["mrr_cents_by_currency"]) == ("USD", {"USD": 7000})
    # Active at the start: a, b, c, i; of those b, c and i cancelled in the period.
    assert (body["active_at_period_start"], body["cancelled_in_period"]) == (4, 3)
    assert body["churn_ratio"] == 0.75

    # The service gives the same answer without HTTP, and over another period:
    # (2024-01-31, 2024-03-31]: a, b and i active at the start; b and i cancelled.
    sixty = await deployment.billing.business_metrics(AT, timedelta(days=60))
    assert (sixty.active_subscriptions, sixty.mrr_cents) == (4, 7000)
    assert (sixty.active_at_period_start, sixty.cancelled_in_period) == (3, 2)
    assert sixty.churn_ratio == 2 / 3

    # A day later the period (2024-03-02, 2024-04-01] starts with a, b, c, i and j active
    # (d ended on the 1st, j began on the 2nd); b, c and i cancel within it, j only after.
    later = await metrics(deployment, at="2024-04-01T00:00:00Z", period_days=30)
    assert (later["active_at_period_start"], later["cancelled_in_period"]) == (5, 3)
    assert later["churn_ratio"] == 0.6
    assert later["active_subscriptions"] == 4  # a, f, g, j

    # Before anything began: nothing active, no ratio (0 of 0 is not 0% churn).
    before = await metrics(deployment, at="2023-06-01", period_days=30)
    assert (before["active_subscriptions"], before["mrr_cents"]) == (0, 0)
    assert (before["active_at_period_start"], before["churn_ratio"]) == (0, None)


async def test_mrr_uses_the_price_at_subscribe_time(deployment: Deployment) -> None:
    await load_history(deployment)
    # A later price change (made directly: the API has none) does not rewrite history.
    db: Database = deployment.app.state.runtime.db
    async with db.transaction() as session:
        await session.execute(update(Plan).values(monthly_price_cents=99_999))
    body = await metrics(deployment, at="2024-03-31T00:00:00Z")
    assert body["mrr_cents"] == 7000


async def test_several_currencies_are_not_added_up(deployment: Deployment) -> None:
    usd = await post(deployment, PLANS, {"name": "Basic", "monthly_price_cents": 1000})
    eur = await post(
        deployment, PLANS, {"name": "Euro", "monthly_price_cents": 900, "currency": "EUR"}
    )
    for plan in (usd, usd, eur):
        body = {"plan_id": plan["id"], "customer": "c", "started_at": "2024-01-01T00:00:00Z"}
        await post(deployment, SUBSCRIPTIONS, body)
    result = await deployment.billing.business_metrics(AT)
    assert result.active_subscriptions == 3
    assert result.mrr_cents_by_currency == {"USD": 2000, "EUR": 900}
    assert (result.mrr_cents, result.currency) == (None, None)
    body = await metrics(deployment, at="2024-03-31T00:00:00Z")
    assert body["mrr_cents_by_currency"] == {"USD": 2000, "EUR": 900}
    assert body["mrr_cents"] is None


async def test_the_service_refuses_bad_arguments(deployment: Deployment) -> None:
    billing = deployment.billing
    with pytest.raises(InvalidInput):
        await billing.business_metrics(datetime(2024, 1, 1), timedelta(days=30))  # naive
    with pytest.raises(InvalidInput):
        await billing.business_metrics(AT, timedelta(0))
    with pytest.raises(InvalidInput):
        await billing.business_metrics(datetime(1, 1, 2, tzinfo=UTC), timedelta(days=30))
    with pytest.raises(InvalidInput):
        await billing.create_plan("x", 100, "usd")
    with pytest.raises(InvalidInput):
        await billing.list_subscriptions(limit=0)
