"""Auth's rules: accounts, sign-in, sessions and their tokens.

Session lifetime (docs/auth.md has the full story):
- a session expires ``session_max_age`` (24 h) after its last renewal;
- a refresh renews it, pushing expiry to now + max age, only when less than
  ``session_renew_threshold`` (1 h) of it is left; earlier refreshes keep the expiry;
- no session outlives ``session_absolute_max_age`` (30 days) from sign-in;
- an access token never outlives its session.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from ultrachat.audit import AuditLog
from ultrachat.auth import repository
from ultrachat.auth.keys import KeyRing
from ultrachat.auth.models import AuthSession, User
from ultrachat.auth.passwords import PasswordHasherPool, password_problem
from ultrachat.auth.revocation import RevocationList
from ultrachat.auth.tokens import (
    AccessClaims,
    AccessTokenVerifier,
    TokenPolicy,
    epoch,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
)
from ultrachat.cache.config import USER_PROFILES
from ultrachat.cache.tiered import TieredCache
from ultrachat.config import Settings
from ultrachat.errors import Conflict, InvalidInput, NotFound, RateLimited, Unauthorized
from ultrachat.metrics.http import AUTH_EVENTS, RATE_LIMITED
from ultrachat.ratelimit import Decision, Limit, RateLimiter
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import is_id

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
_KNOWN_IP_WINDOW = timedelta(days=30)
_BAD_CREDENTIALS = "invalid username or password"
_BAD_REFRESH = "invalid or expired refresh token"

_REVOKE_EVENTS = {
    "logout": "auth.logout",
    "logout_all": "auth.logout_all",
    "revoked": "auth.session_revoked",
    "password_change": "auth.sessions_revoked",
    "refresh_reuse": "auth.refresh_reuse",
}

SessionsRevoked = Callable[[str, list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Profile:
    """A user as shown to them (``/users/me``): no secrets, so it may be cached anywhere."""

    id: str
    username: str
    role: str
    created_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Profile:
        return cls(
            data["id"], data["username"], data["role"], datetime.fromisoformat(data["created_at"])
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    device: str


class AuthService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        keys: KeyRing,
        hasher: PasswordHasherPool,
        revocations: RevocationList,
        limiter: RateLimiter,
        cache: TieredCache | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._settings = settings
        self._audit = audit
        self._cache = cache
        self._db = db
        self._keys = keys
        self._hasher = hasher
        self._revocations = revocations
        self._limiter = limiter
        self._policy = TokenPolicy(
            settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_seconds
        )
        self._verifier = AccessTokenVerifier(keys, self._policy)
        self._auth_limit = Limit(settings.rate_limit_auth_max, settings.rate_limit_window_seconds)
        self._account_limit = Limit(
            settings.rate_limit_account_max, settings.rate_limit_window_seconds
        )
        self._api_limit = (
            Limit(settings.rate_limit_api_max, settings.rate_limit_window_seconds)
            if settings.rate_limit_api_max
            else None
        )
        self._revoked_listeners: list[SessionsRevoked] = []

    def on_sessions_revoked(self, listener: SessionsRevoked) -> None:
        """Call ``listener(user_id, session_ids)`` after sessions are revoked (closes sockets)."""
        self._revoked_listeners.append(listener)

    # Accounts

    async def register(self, username: str, password: str, client: ClientInfo) -> User:
        await self._enforce("register-ip", f"register:ip:{client.ip}", self._auth_limit)
        if not USERNAME_RE.fullmatch(username):
            raise InvalidInput(
                "username must be 3-32 characters of letters, digits, '_', '.' or '-'"
            )
        problem = password_problem(password)
        if problem:
            raise InvalidInput(problem)
        password_hash = await self._hasher.hash(password)
        now = datetime.now(UTC)
        user = User(
            id=new_id(),
            username=username,
            username_key=username.lower(),
            password_hash=password_hash,
            role="member",
            created_at=now,
            password_changed_at=now,
        )
        try:
            async with self._db.transaction() as session:
                await repository.add_user(session, user)
        except IntegrityError:
            raise Conflict("username is already taken") from None
        AUTH_EVENTS.labels("register").inc()
        await self._record(
            "auth.register", user.id, user.id, client.ip, {"username": user.username}
        )
        return user

    async def get_user(self, user_id: str) -> User:
        async with self._db.sessions() as session:
            user = await repository.get_user(session, user_id)
        if user is None:
            raise NotFound("user not found")
        return user

    async def get_profile(self, user_id: str) -> Profile:
        """The user as shown to them (``/users/me``), from the ``user-profiles`` cache.

        Id, username and creation time never change; whatever changes the role must call
        ``profile_changed``. Never use it to decide access or to check a password:
        ``get_user`` reads the database.
        """

        if self._cache is None:
            return Profile.from_json(await self._load_profile(user_id))
        return Profile.from_json(
            await self._cache.get(
                USER_PROFILES, user_id, functools.partial(self._load_profile, user_id)
            )
        )

    async def _warm_profile(self, user_id: str) -> None:
        """A client that has just signed in or refreshed asks for its profile next (the app
        starting): have it ready on every node. Never fails the sign-in."""
        if self._cache is not None:
            await self._cache.warm(
                USER_PROFILES, user_id, functools.partial(self._load_profile, user_id)
            )

    async def _load_profile(self, user_id: str) -> dict[str, str]:
        user = await self.get_user(user_id)
        return Profile(user.id, user.username, user.role, user.created_at).to_json()

    async def profile_changed(self, user_id: str) -> None:
        """Forget the cached profile on every node (after a committed change to the user)."""
        if self._cache is not None:
            await self._cache.invalidate([(USER_PROFILES, user_id)])

    async def change_password(
        self, claims: AccessClaims, current_password: str, new_password: str
    ) -> None:
        await self._enforce("password", f"password:user:{claims.user_id}", self._account_limit)
        user = await self.get_user(claims.user_id)
        if not await self._hasher.verify(user.password_hash, current_password):
            raise Unauthorized("current password is wrong")
        problem = password_problem(new_password)
        if problem:
            raise InvalidInput(problem)
        new_hash = await self._hasher.hash(new_password)
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            await repository.set_password(session, user.id, new_hash, now)
            revoked = await repository.revoke_sessions(
                session, user.id, now, "password_change", keep=claims.session_id
            )
        await self._after_revoke(user.id, revoked)
        AUTH_EVENTS.labels("password_change").inc()
        await self._record("auth.password_changed", user.id, user.id)
        await self._record_revoked("password_change", user.id, user.id, revoked)

    # Sign-in and tokens

    async def login(self, username: str, password: str, client: ClientInfo) -> IssuedTokens:
        await self._enforce("login-ip", f"login:ip:{client.ip}", self._auth_limit)
        account_key = f"login:account:{username.lower()}"
        account = await self._limiter.hit(account_key, self._account_limit)
        async with self._db.sessions() as session:
            # A name no account can have (a NUL byte, say) is an unknown user, not a query.
            user = (
                await repository.get_user_by_username(session, username)
                if USERNAME_RE.fullmatch(username)
                else None
            )
            if not account.allowed and not (
                user is not None
                and await repository.has_signed_in_from(
                    session, user.id, client.ip, datetime.now(UTC) - _KNOWN_IP_WINDOW
                )
            ):
                # The account is under attack; only IPs it has signed in from before get by.
                self._refuse("login-account", account)
        ok = await self._hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            AUTH_EVENTS.labels("login_failed").inc()
            await self._record(
                "auth.login_failed",
                "",
                user.id if user else "",
                client.ip,
                {"username": username[:64], "known_user": user is not None},
            )
            raise Unauthorized(_BAD_CREDENTIALS)
        if self._hasher.needs_rehash(user.password_hash):
            await self._rehash(user.id, password)
        tokens = await self._start_session(user.id, client)
        await self._warm_profile(user.id)
        AUTH_EVENTS.labels("login_ok").inc()
        await self._record(
            "auth.login", user.id, user.id, client.ip, {"session_id": tokens.session_id}
        )
        return tokens

    async def refresh(self, refresh_token: str, client: ClientInfo) -> IssuedTokens:
        await self._enforce("refresh-ip", f"refresh:ip:{client.ip}", self._auth_limit)
        token_hash = hash_refresh_token(refresh_token)
        now = datetime.now(UTC)
        reused_by: tuple[str, list[str]] | None = None
        async with self._db.transaction() as session:
            row = await repository.get_refresh_token(session, token_hash)
            auth_session = await repository.get_session(session, row.session_id) if row else None
            if row is None or auth_session is None:
                raise Unauthorized(_BAD_REFRESH)
            await self._enforce(
                "refresh-account", f"refresh:user:{auth_session.user_id}", self._account_limit
            )
            if not await repository.claim_refresh_token(session, token_hash, now):
                # RFC 9700 reuse detection: a rotated token came back, so it leaked.
                revoked = await repository.revoke_sessions(
                    session, auth_session.user_id, now, "refresh_reuse", only=auth_session.id
                )
                reused_by = (auth_session.user_id, revoked)
            elif not _is_live(auth_session, now):
                raise Unauthorized(_BAD_REFRESH)
            else:
                expires_at = self._renewed_expiry(auth_session, now)
                await repository.renew_session(session, auth_session.id, now, expires_at)
                refresh, new_hash = new_refresh_token()
                await repository.add_refresh_token(session, new_hash, auth_session.id, now)
        if reused_by is not None:
            await self._after_revoke(*reused_by)
            AUTH_EVENTS.labels("refresh_reuse").inc()
            await self._record_revoked("refresh_reuse", "", reused_by[0], reused_by[1], client.ip)
            raise Unauthorized(_BAD_REFRESH)
        await self._warm_profile(auth_session.user_id)
        AUTH_EVENTS.labels("refresh_ok").inc()
        return self._tokens(auth_session.user_id, auth_session.id, refresh, now, expires_at)

    async def authenticate(self, token: str) -> AccessClaims:
        """Verify an access token and that its session is still live (one cache lookup)."""
        claims = await self._verifier.verify(token)
        if await self._revocations.is_revoked(claims.session_id):
            raise Unauthorized("session has been revoked")
        return claims

    async def enforce_api_limit(self, user_id: str) -> Decision | None:
        if self._api_limit is None:
            return None
        return await self._enforce("api-user", f"api:user:{user_id}", self._api_limit)

    # Sessions

    async def list_sessions(self, user_id: str) -> Sequence[AuthSession]:
        async with self._db.sessions() as session:
            return await repository.list_live_sessions(session, user_id, datetime.now(UTC))

    async def logout(self, claims: AccessClaims) -> None:
        await self.revoke_session(claims.user_id, claims.session_id, reason="logout")

    async def logout_all(self, user_id: str) -> None:
        async with self._db.transaction() as session:
            revoked = await repository.revoke_sessions(
                session, user_id, datetime.now(UTC), "logout_all"
            )
        await self._after_revoke(user_id, revoked)
        await self._record_revoked("logout_all", user_id, user_id, revoked)

    async def revoke_session(self, user_id: str, session_id: str, reason: str = "revoked") -> None:
        if not is_id(session_id):
            raise NotFound("session not found")
        async with self._db.transaction() as session:
            revoked = await repository.revoke_sessions(
                session, user_id, datetime.now(UTC), reason, only=session_id
            )
        if not revoked:
            raise NotFound("session not found")
        await self._after_revoke(user_id, revoked)
        await self._record_revoked(reason, user_id, user_id, revoked)

    # Internals

    async def _start_session(self, user_id: str, client: ClientInfo) -> IssuedTokens:
        now = datetime.now(UTC)
        max_age = timedelta(seconds=self._settings.session_max_age_seconds)
        absolute = now + timedelta(seconds=self._settings.session_absolute_max_age_seconds)
        auth_session = AuthSession(
            id=new_id(),
            user_id=user_id,
            device=client.device[:255],
            ip=client.ip[:64],
            created_at=now,
            last_used_at=now,
            expires_at=min(now + max_age, absolute),
            absolute_expires_at=absolute,
        )
        refresh, refresh_hash = new_refresh_token()
        async with self._db.transaction() as session:
            await repository.add_session(session, auth_session)
            await repository.add_refresh_token(session, refresh_hash, auth_session.id, now)
        return self._tokens(user_id, auth_session.id, refresh, now, auth_session.expires_at)

    def _tokens(
        self, user_id: str, session_id: str, refresh: str, now: datetime, session_expiry: datetime
    ) -> IssuedTokens:
        iat = epoch(now)
        exp = min(iat + self._settings.access_token_ttl_seconds, epoch(session_expiry))
        access = issue_access_token(self._keys, self._policy, user_id, session_id, iat, exp)
        return IssuedTokens(access, refresh, exp - iat, session_id)

    def _renewed_expiry(self, auth_session: AuthSession, now: datetime) -> datetime:
        threshold = timedelta(seconds=self._settings.session_renew_threshold_seconds)
        if auth_session.expires_at - now >= threshold:
            return auth_session.expires_at
        max_age = timedelta(seconds=self._settings.session_max_age_seconds)
        return min(now + max_age, auth_session.absolute_expires_at)

    async def _rehash(self, user_id: str, password: str) -> None:
        new_hash = await self._hasher.hash(password)
        async with self._db.transaction() as session:
            user = await repository.get_user(session, user_id)
            if user is not None:
                user.password_hash = new_hash

    async def _enforce(self, name: str, key: str, limit: Limit) -> Decision:
        decision = await self._limiter.hit(key, limit)
        if not decision.allowed:
            self._refuse(name, decision)
        return decision

    @staticmethod
    def _refuse(name: str, decision: Decision) -> None:
        RATE_LIMITED.labels(name).inc()
        raise RateLimited("too many requests; retry later", headers=decision.headers())

    async def _record(
        self,
        event: str,
        actor_id: str | None,
        user_id: str,
        ip: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        if self._audit is not None:
            await self._audit.record(
                event,
                actor_id=actor_id,
                target_type="user",
                target_id=user_id,
                ip=ip,
                details=details,
            )

    async def _record_revoked(
        self,
        reason: str,
        actor_id: str | None,
        user_id: str,
        session_ids: list[str],
        ip: str | None = None,
    ) -> None:
        event = _REVOKE_EVENTS.get(reason, "auth.session_revoked")
        details: dict[str, object] = {"reason": reason, "session_ids": session_ids}
        await self._record(event, actor_id, user_id, ip, details)

    async def _after_revoke(self, user_id: str, session_ids: list[str]) -> None:
        if not session_ids:
            return
        await self._revocations.revoke(session_ids)
        for listener in self._revoked_listeners:
            await listener(user_id, session_ids)


def _is_live(auth_session: AuthSession, now: datetime) -> bool:
    return auth_session.revoked_at is None and auth_session.expires_at > now


# Operator tasks (the CLI): no rate limits, no request.


async def create_admin(
    db: Database, hasher: PasswordHasherPool, username: str, password: str
) -> User:
    """A new account with the ``admin`` role."""
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput("username must be 3-32 characters of a-z, 0-9, '_', '.' or '-'")
    problem = password_problem(password)
    if problem:
        raise InvalidInput(problem)
    now = datetime.now(UTC)
    user = User(
        id=new_id(),
        username=username,
        username_key=username.lower(),
        password_hash=await hasher.hash(password),
        role="admin",
        created_at=now,
        password_changed_at=now,
    )
    try:
        async with db.transaction() as session:
            await repository.add_user(session, user)
    except IntegrityError:
        raise Conflict("username is already taken") from None
    return user


async def grant_role(db: Database, username: str, role: str) -> tuple[User, str]:
    """Give an existing account ``role``; returns the user and its previous role."""
    async with db.transaction() as session:
        user = (
            await repository.get_user_by_username(session, username)
            if USERNAME_RE.fullmatch(username)
            else None
        )
        if user is None:
            raise NotFound(f"no user named {username!r}")
        previous = user.role
        user.role = role
    return user, previous
