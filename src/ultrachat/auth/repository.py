"""All of auth's SQL. Functions take the caller's session; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.auth.models import AuthSession, RefreshToken, SigningKey, User

SigningKeyRow = SigningKey


# Signing keys


async def add_signing_key(
    session: AsyncSession, kid: str, private_pem: bytes, public_pem: str, created_at: datetime
) -> None:
    session.add(
        SigningKey(kid=kid, private_pem=private_pem, public_pem=public_pem, created_at=created_at)
    )


# pg_advisory_xact_lock key serializing the first signing key's creation: "uckey" in ASCII.
_SIGNING_KEYS_LOCK = 0x75636B6579


async def lock_signing_keys(session: AsyncSession) -> None:
    """Until the transaction ends, no other process creates signing keys this way.
    (SQLite serializes writers by itself, and one process serves it.)"""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SIGNING_KEYS_LOCK})


async def list_signing_keys(session: AsyncSession) -> Sequence[SigningKey]:
    result = await session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))
    return result.all()


# Users


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    result = await session.scalars(select(User).where(User.username_key == username.lower()))
    return result.first()


async def add_user(session: AsyncSession, user: User) -> None:
    session.add(user)
    await session.flush()


async def set_password(
    session: AsyncSession, user_id: str, password_hash: str, changed_at: datetime
) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=password_hash, password_changed_at=changed_at)
    )


async def set_role(session: AsyncSession, user_id: str, role: str) -> bool:
    result = await session.execute(update(User).where(User.id == user_id).values(role=role))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Sessions


async def add_session(session: AsyncSession, auth_session: AuthSession) -> None:
    session.add(auth_session)
    await session.flush()


async def get_session(session: AsyncSession, session_id: str) -> AuthSession | None:
    return await session.get(AuthSession, session_id)


async def list_live_sessions(
    session: AsyncSession, user_id: str, now: datetime
) -> Sequence[AuthSession]:
    result = await session.scalars(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .order_by(AuthSession.last_used_at.desc())
    )
    return result.all()


async def revoke_sessions(
    session: AsyncSession,
    user_id: str,
    now: datetime,
    reason: str,
    *,
    only: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """Revoke the user's live sessions (one, or all but one); returns the ids revoked."""
    query = select(AuthSession.id).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if only is not None:
        query = query.where(AuthSession.id == only)
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    ids = list((await session.scalars(query)).all())
    if ids:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
    return ids


async def recently_revoked_session_ids(session: AsyncSession, since: datetime) -> list[str]:
    result = await session.scalars(select(AuthSession.id).where(AuthSession.revoked_at >= since))
    return list(result.all())


async def has_signed_in_from(session: AsyncSession, user_id: str, ip: str, since: datetime) -> bool:
    query = select(
        exists().where(
            AuthSession.user_id == user_id,
            AuthSession.ip == ip,
            AuthSession.created_at >= since,
            AuthSession.revoke_reason.is_distinct_from("refresh_reuse"),
        )
    )
    return bool(await session.scalar(query))


# Refresh tokens


async def add_refresh_token(
    session: AsyncSession, token_hash: str, session_id: str, created_at: datetime
) -> None:
    session.add(RefreshToken(token_hash=token_hash, session_id=session_id, created_at=created_at))


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.get(RefreshToken, token_hash)


async def claim_refresh_token(session: AsyncSession, token_hash: str, now: datetime) -> bool:
    """Mark a refresh token used. Exactly one of several racing callers gets True."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def renew_session(
    session: AsyncSession, session_id: str, last_used_at: datetime, expires_at: datetime
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(last_used_at=last_used_at, expires_at=expires_at)
    )


# The directory other services read through (auth/directory.py)


async def existing_user_ids(session: AsyncSession, user_ids: Sequence[str]) -> set[str]:
    if not user_ids:
        return set()
    result = await session.scalars(select(User.id).where(User.id.in_(user_ids)))
    return set(result.all())


async def user_ids_by_username(session: AsyncSession, usernames: Sequence[str]) -> dict[str, str]:
    if not usernames:
        return {}
    keys = [name.lower() for name in usernames]
    result = await session.execute(
        select(User.username_key, User.id).where(User.username_key.in_(keys))
    )
    return {row[0]: row[1] for row in result.all()}
