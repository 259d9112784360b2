"""The billing admin API on both backends: who may call it, what it accepts, what it records."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.auth.factories import Account, account, assert_error
from ultrachat.audit.models import AuditRecord
from ultrachat.storage import Database, new_id

ADMIN = "/api/v1/admin"
PLANS = f"{ADMIN}/plans"
SUBSCRIPTIONS = f"{ADMIN}/subscriptions"
BUSINESS = f"{ADMIN}/business"

# A fixed id, not new_id(): the ids are part of the test names, which must be the same in
# every process that collects them (pytest-xdist's workers compare their collections).
NO_SUCH_ID = "01900000-0000-7000-8000-0000000000ff"
ROUTES = [
    ("POST", PLANS, {"name": "x", "monthly_price_cents": 100}),
    ("GET", PLANS, None),
    ("POST", f"{PLANS}/{NO_SUCH_ID}/archive", None),
    ("POST", SUBSCRIPTIONS, {"plan_id": NO_SUCH_ID, "customer": "acme"}),
    ("GET", SUBSCRIPTIONS, None),
    ("POST", f"{SUBSCRIPTIONS}/{NO_SUCH_ID}/cancel", None),
    ("GET", BUSINESS, None),
]


def unique(stem: str = "plan") -> str:
    return f"{stem}-{secrets.token_hex(4)}"


async def create_plan(
    client: httpx.AsyncClient, admin: Account, cents: int = 1000, **extra: Any
) -> dict[str, Any]:
    body = {"name": unique(), "monthly_price_cents": cents, **extra}
    response = await client.post(PLANS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    plan: dict[str, Any] = response.json()
    return plan


async def subscribe(
    client: httpx.AsyncClient, admin: Account, plan_id: str, **extra: Any
) -> dict[str, Any]:
    body = {"plan_id": plan_id, "customer": unique("customer"), **extra}
    response = await client.post(SUBSCRIPTIONS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    subscription: dict[str, Any] = response.json()
    return subscription


async def audit_rows(app: FastAPI, target_id: str) -> list[AuditRecord]:
    db: Database = app.state.runtime.db
    async with db.sessions() as session:
        stmt = select(AuditRecord).where(AuditRecord.target_id == target_id)
        return list((await session.scalars(stmt.order_by(AuditRecord.seq))).all())


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
async def test_anonymous_is_401(
    client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    assert_error(await client.request(method, url, json=body), 401, "unauthorized")


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
async def test_a_member_is_403(
    client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    member = await account(client)
    response = await client.request(method, url, json=body, headers=member.headers)
    assert_error(response, 403, "forbidden")


async def test_plans_are_created_listed_and_archived(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    name = unique()
    created = await client.post(
        PLANS,
        json={"name": name, "monthly_price_cents": 2500, "currency": "EUR"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["name"] == name
    assert (plan["monthly_price_cents"], plan["currency"], plan["archived_at"]) == (
        2500,
        "EUR",
        None,
    )

    default = await create_plan(client, admin, 0)
    assert (default["currency"], default["monthly_price_cents"]) == ("USD", 0)

    again = await client.post(
        PLANS, json={"name": name, "monthly_price_cents": 1}, headers=admin.headers
    )
    assert_error(again, 409, "conflict")

    listed = await client.get(PLANS, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    by_id = {p["id"]: p for p in listed.json()["plans"]}
    assert by_id[plan["id"]] == plan

    archived = await client.post(f"{PLANS}/{plan['id']}/archive", headers=admin.headers)
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived_at"] is not None
    twice = await client.post(f"{PLANS}/{plan['id']}/archive", headers=admin.headers)
    assert_error(twice, 409, "conflict")
    for missing in (new_id(), "not-an-id"):
        gone = await client.post(f"{PLANS}/{missing}/archive", headers=admin.headers)
        assert_error(gone, 404, "not_found")

    # An archived plan takes no new subscriptions.
    refused = await client.post(
        SUBSCRIPTIONS, json={"plan_id": plan["id"], "customer": "acme"}, headers=admin.headers
    )
    assert_error(refused, 409, "conflict")

    records = await audit_rows(app, plan["id"])
    assert [(r.event, r.actor_id, r.target_type) for r in records] == [
        ("billing.plan_created", admin.id, "plan"),
        ("billing.plan_archived", admin.id, "plan"),
    ]
    assert '"monthly_price_cents":2500' in records[0].details


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "monthly_price_cents": 100},
        {"name": "x" * 81, "monthly_price_cents": 100},
        {"name": "   ", "monthly_price_cents": 100},
        {"name": "nul\x00", "monthly_price_cents": 100},
        {"name": "tab\there", "monthly_price_cents": 100},
        {"name": "ok", "monthly_price_cents": -1},
        {"name": "ok", "monthly_price_cents": 1_000_000_001},
        {"name": "ok", "monthly_price_cents": "100"},
        {"name": "ok", "monthly_price_cents": 10.5},
        {"name": "ok", "monthly_price_cents": True},
        {"name": "ok", "monthly_price_cents": 100, "currency": "usd"},
        {"name": "ok", "monthly_price_cents": 100, "currency": "US"},
        {"name": "ok", "monthly_price_cents": 100, "currency": "USDX"},
        {"name": "ok", "monthly_price_cents": 100, "currency": "U1D"},
        {"name": "ok", "monthly_price_cents": 100, "currency": "USD\n"},
        {"name": "ok", "monthly_price_cents": 100, "owner": "me"},
        {"name": "ok"},
        {"monthly_price_cents": 100},
        [],
    ],
)
async def test_invalid_plans_are_422(client: httpx.AsyncClient, admin: Account, body: Any) -> None:
    assert_error(await client.post(PLANS, json=body, headers=admin.headers), 422, "invalid_input")


async def test_the_price_limits_are_accepted(client: httpx.AsyncClient, admin: Account) -> None:
    top = await create_plan(client, admin, 1_000_000_000)
    assert top["monthly_price_cents"] == 1_000_000_000


async def test_subscriptions_copy_the_price_and_are_cancelled_once(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    plan = await create_plan(client, admin, 1234, currency="GBP")
    started = datetime(2020, 5, 1, 12, 0, tzinfo=UTC)
    sub = await subscribe(
        client, admin, plan["id"], customer="Acme Ltd", started_at="2020-05-01T14:00:00+02:00"
    )
    assert sub["plan_id"] == plan["id"]
    assert sub["customer"] == "Acme Ltd"
    assert (sub["monthly_price_cents"], sub["currency"]) == (1234, "GBP")
    assert datetime.fromisoformat(sub["started_at"]) == started
    assert sub["cancelled_at"] is None

    now = await subscribe(client, admin, plan["id"])
    assert abs(datetime.fromisoformat(now["started_at"]) - datetime.now(UTC)) < timedelta(minutes=1)

    url = f"{SUBSCRIPTIONS}/{sub['id']}/cancel"
    early = await client.post(
        url, json={"cancelled_at": "2020-05-01T11:59:59Z"}, headers=admin.headers
    )
    assert_error(early, 422, "invalid_input")
    cancelled = await client.post(
        url, json={"cancelled_at": "2020-06-01T00:00:00Z"}, headers=admin.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert datetime.fromisoformat(body["cancelled_at"]) == datetime(2020, 6, 1, tzinfo=UTC)
    assert (body["id"], body["customer"], body["currency"]) == (sub["id"], "Acme Ltd", "GBP")
    twice = await client.post(url, headers=admin.headers)
    assert_error(twice, 409, "conflict")

    # No body: cancelled now.
    ended = await client.post(f"{SUBSCRIPTIONS}/{now['id']}/cancel", headers=admin.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["cancelled_at"] is not None

    for missing in (new_id(), "nope"):
        gone = await client.post(f"{SUBSCRIPTIONS}/{missing}/cancel", headers=admin.headers)
        assert_error(gone, 404, "not_found")

    records = await audit_rows(app, sub["id"])
    assert [(r.event, r.actor_id, r.target_type) for r in records] == [
        ("billing.subscription_created", admin.id, "subscription"),
        ("billing.subscription_cancelled", admin.id, "subscription"),
    ]
    assert '"customer":"Acme Ltd"' in records[0].details


async def test_a_subscription_needs_a_known_plan(client: httpx.AsyncClient, admin: Account) -> None:
    for plan_id in (new_id(), "missing"):
        response = await client.post(
            SUBSCRIPTIONS, json={"plan_id": plan_id, "customer": "acme"}, headers=admin.headers
        )
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "extra",
    [
        {"customer": ""},
        {"customer": "c" * 121},
        {"customer": "nul\x00"},
        {"customer": 42},
        {"started_at": "2020-01-01T00:00:00"},  # no offset
        {"started_at": "yesterday"},
        {"started_at": 1_700_000_000},
        {"started_at": "0001-01-01T00:00:00+01:00"},  # before the earliest time in UTC
        {"plan_id": ""},
        {"plan_id": "p" * 37},
        {"coupon": "FREE"},
    ],
)
async def test_invalid_subscriptions_are_422(
    client: httpx.AsyncClient, admin: Account, extra: dict[str, Any]
) -> None:
    plan = await create_plan(client, admin)
    body = {"plan_id": plan["id"], "customer": "acme", **extra}
    response = await client.post(SUBSCRIPTIONS, json=body, headers=admin.headers)
    assert_error(response, 422, "invalid_input")


@pytest.mark.parametrize(
    "body",
    [
        {"cancelled_at": "2021-01-01"},
        {"cancelled_at": "2021-01-01T00:00:00"},
        {"cancelled_at": 0},
        {"at": "2021-01-01T00:00:00Z"},
    ],
)
async def test_invalid_cancellations_are_422(
    client: httpx.AsyncClient, admin: Account, body: dict[str, Any]
) -> None:
    plan = await create_plan(client, admin)
    sub = await subscribe(client, admin, plan["id"], started_at="2020-01-01T00:00:00Z")
    url = f"{SUBSCRIPTIONS}/{sub['id']}/cancel"
    assert_error(await client.post(url, json=body, headers=admin.headers), 422, "invalid_input")


async def test_subscriptions_are_listed_newest_first_and_by_activity(
    client: httpx.AsyncClient, admin: Account
) -> None:
    plan = await create_plan(client, admin)
    # In the future, so that they are the newest starts of the whole shared database.
    later = await subscribe(client, admin, plan["id"], started_at="2999-02-01T00:00:00Z")
    sooner = await subscribe(client, admin, plan["id"], started_at="2999-01-01T00:00:00Z")
    page = await client.get(SUBSCRIPTIONS, params={"limit": 2}, headers=admin.headers)
    assert page.status_code == 200, page.text
    assert [s["id"] for s in page.json()["subscriptions"]] == [later["id"], sooner["id"]]

    active_now = await subscribe(client, admin, plan["id"], started_at="2001-01-01T00:00:00Z")
    ended = await subscribe(client, admin, plan["id"], started_at="2001-01-01T00:00:00Z")
    cancel = await client.post(f"{SUBSCRIPTIONS}/{ended['id']}/cancel", headers=admin.headers)
    assert cancel.status_code == 200, cancel.text

    everything = await client.get(SUBSCRIPTIONS, params={"limit": 1000}, headers=admin.headers)
    all_ids = {s["id"] for s in everything.json()["subscriptions"]}
    assert {later["id"], sooner["id"], active_now["id"], ended["id"]} <= all_ids
    active = await client.get(
        SUBSCRIPTIONS, params={"active": "true", "limit": 1000}, headers=admin.headers
    )
    active_ids = {s["id"] for s in active.json()["subscriptions"]}
    assert active_now["id"] in active_ids
    assert not {later["id"], sooner["id"], ended["id"]} & active_ids

    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"active": "maybe"}):
        bad = await client.get(SUBSCRIPTIONS, params=params, headers=admin.headers)
        assert_error(bad, 422, "invalid_input")


async def test_business_metrics_answer_and_validate(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.get(BUSINESS, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "at",
        "period_start",
        "active_subscriptions",
        "mrr_cents",
        "currency",
        "mrr_cents_by_currency",
        "active_at_period_start",
        "cancelled_in_period",
        "churn_ratio",
    }
    span = datetime.fromisoformat(body["at"]) - datetime.fromisoformat(body["period_start"])
    assert span == timedelta(days=30)

    week = await client.get(
        BUSINESS, params={"period_days": 7, "at": "1990-01-01"}, headers=admin.headers
    )
    assert week.status_code == 200, week.text
    assert week.json()["period_start"].startswith("1989-12-25T00:00:00")
    # Nothing existed in 1990: nothing active, no revenue, no churn ratio.
    assert week.json()["active_subscriptions"] == 0
    assert week.json()["mrr_cents"] == 0
    assert week.json()["churn_ratio"] is None

    for params in (
        {"period_days": 0},
        {"period_days": 100_000},
        {"period_days": "month"},
        {"at": "tomorrow"},
        {"at": "0001-01-02"},  # the period would start before the earliest time
    ):
        bad = await client.get(BUSINESS, params=params, headers=admin.headers)
        assert_error(bad, 422, "invalid_input")
