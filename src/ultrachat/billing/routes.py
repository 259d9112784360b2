"""Billing's admin API under /api/v1/admin: admins only (auth's ``require_admin``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from ultrachat.audit.schemas import parse_moment
from ultrachat.auth.dependencies import AdminClaims
from ultrachat.billing.schemas import (
    BusinessMetricsOut,
    PlanCreate,
    PlanList,
    PlanOut,
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionOut,
)
from ultrachat.billing.service import MAX_LIST, BillingService
from ultrachat.errors import InvalidInput
from ultrachat.gateway.openapi import error_responses

router = APIRouter(prefix="/api/v1/admin", tags=["admin", "billing"])


def _billing(request: Request) -> BillingService:
    service: BillingService = request.app.state.runtime.billing
    return service


Billing = Annotated[BillingService, Depends(_billing)]
PlanId = Annotated[str, Path(min_length=1, max_length=36)]
SubscriptionId = Annotated[str, Path(min_length=1, max_length=36)]
READ_ERRORS = error_responses(401, 403, 422)
WRITE_ERRORS = error_responses(401, 403, 404, 409, 422)


# Plans


@router.post(
    "/plans",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_plan(body: PlanCreate, claims: AdminClaims, billing: Billing) -> PlanOut:
    """A plan with a monthly price in minor units (cents); 409 if the name is taken."""
    plan = await billing.create_plan(
        body.name, body.monthly_price_cents, body.currency, actor_id=claims.user_id
    )
    return PlanOut.model_validate(plan)


@router.get("/plans", responses=READ_ERRORS)
async def list_plans(claims: AdminClaims, billing: Billing) -> PlanList:
    """Every plan, archived ones included, oldest first."""
    return PlanList(plans=[PlanOut.model_validate(p) for p in await billing.list_plans()])


@router.post("/plans/{plan_id}/archive", responses=WRITE_ERRORS)
async def archive_plan(plan_id: PlanId, claims: AdminClaims, billing: Billing) -> PlanOut:
    """No new subscriptions on the plan (existing ones carry on); 409 if already archived."""
    return PlanOut.model_validate(await billing.archive_plan(plan_id, actor_id=claims.user_id))


# Subscriptions


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
)
async def create_subscription(
    body: SubscriptionCreate, claims: AdminClaims, billing: Billing
) -> SubscriptionOut:
    """Subscribe a customer at the plan's current price; 404 unknown plan, 409 archived."""
    subscription = await billing.create_subscription(
        body.plan_id, body.customer, body.started_at, actor_id=claims.user_id
    )
    return SubscriptionOut.model_validate(subscription)


@router.get("/subscriptions", responses=READ_ERRORS)
async def list_subscriptions(
    claims: AdminClaims,
    billing: Billing,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> SubscriptionList:
    """Newest start first; ``active=true``: only those active now."""
    subscriptions = await billing.list_subscriptions(active_only=active, limit=limit)
    return SubscriptionList(
        subscriptions=[SubscriptionOut.model_validate(s) for s in subscriptions]
    )


@router.post("/subscriptions/{subscription_id}/cancel", responses=WRITE_ERRORS)
async def cancel_subscription(
    subscription_id: SubscriptionId,
    claims: AdminClaims,
    billing: Billing,
    body: SubscriptionCancel | None = None,
) -> SubscriptionOut:
    """End a subscription now or at ``cancelled_at``; 409 if already cancelled."""
    at = body.cancelled_at if body is not None else None
    subscription = await billing.cancel_subscription(subscription_id, at, actor_id=claims.user_id)
    return SubscriptionOut.model_validate(subscription)


# Metrics


@router.get("/business", responses=READ_ERRORS)
async def business_metrics(
    claims: AdminClaims,
    billing: Billing,
    period_days: Annotated[int, Query(ge=1, le=3660)] = 30,
    at: Annotated[
        str | None,
        Query(max_length=64, description="YYYY-MM-DD or ISO 8601 time; default now"),
    ] = None,
) -> BusinessMetricsOut:
    """Active subscriptions and MRR at ``at``, churn over the ``period_days`` before it."""
    moment = None
    if at is not None:
        try:
            moment = parse_moment(at)
        except ValueError as exc:
            raise InvalidInput(f"at: {exc}") from None
    metrics = await billing.business_metrics(moment, timedelta(days=period_days))
    return BusinessMetricsOut.model_validate(metrics)
