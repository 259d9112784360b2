"""Access tokens (JWT RS256) and refresh tokens (opaque, stored as a hash).

Verification is deliberately narrow: RS256 only, our own keys only (looked up by ``kid``;
``jwk``/``jku``/``x5u``/``x5c`` headers are refused rather than ignored), and every
registered claim checked. Anything else is a 401 with the same message, so a forger learns
nothing about which check failed.

A token that passed every check stays good until it expires, for as long as the key that
signed it verifies: its signature, ``iss``, ``aud``, ``typ``, ``iat`` and ``nbf`` cannot change.
``AccessTokenVerifier`` therefore remembers verified tokens (by the token string) and, on a
repeat, checks only ``exp`` and the key, saving the RSA and JSON work on every request after a
client's first. Session revocation is not a property of the token and is never cached here:
``AuthService.authenticate`` asks the revocation list on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from ultrachat.auth.keys import KeyRing
from ultrachat.errors import Unauthorized
from ultrachat.storage import new_id

ACCESS_TYPE = "access"
_FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "sid", "jti", "typ"]
_INVALID = "invalid or expired access token"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str
    token_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    leeway_seconds: int


def issue_access_token(
    keys: KeyRing, policy: TokenPolicy, user_id: str, session_id: str, now: int, expires_at: int
) -> str:
    key = keys.signing_key
    claims = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": user_id,
        "sid": session_id,
        "jti": new_id(),
        "typ": ACCESS_TYPE,
        "iat": now,
        "nbf": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


async def verify_access_token(keys: KeyRing, policy: TokenPolicy, token: str) -> AccessClaims:
    """The token's claims if every check passes; raises Unauthorized otherwise."""
    return (await _verify(keys, policy, token))[0]


async def _verify(
    keys: KeyRing, policy: TokenPolicy, token: str
) -> tuple[AccessClaims, str, float]:
    """The claims, the signing key's ``kid`` and the raw ``exp``; raises Unauthorized."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized(_INVALID) from None
    kid = header.get("kid")
    if (
        header.get("alg") != "RS256"
        or not isinstance(kid, str)
        or len(kid) > 64
        or _FORBIDDEN_HEADERS.intersection(header)
    ):
        raise Unauthorized(_INVALID)
    key = await keys.verification_key_or_reload(kid)
    if key is None:
        raise Unauthorized(_INVALID)
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=["RS256"],
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway_seconds,
            options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
        )
    except jwt.PyJWTError:
        raise Unauthorized(_INVALID) from None
    sub, sid, jti = claims.get("sub"), claims.get("sid"), claims.get("jti")
    if claims.get("typ") != ACCESS_TYPE or not all(isinstance(v, str) for v in (sub, sid, jti)):
        raise Unauthorized(_INVALID)
    exp = claims["exp"]
    return AccessClaims(str(sub), str(sid), str(jti), int(exp)), kid, float(exp)


class AccessTokenVerifier:
    """``verify_access_token`` with a bounded in-process memory of tokens that passed.

    A remembered token is answered without PyJWT while ``exp`` is within the leeway, exactly
    as ``jwt.decode`` would judge it, and while its key is still in the verification set, so
    a retired key stops its tokens here too. Only tokens that passed are remembered: forged
    ones cost full verification every time and cannot fill the memory.
    """

    def __init__(self, keys: KeyRing, policy: TokenPolicy, max_entries: int = 10_000) -> None:
        self._keys = keys
        self._policy = policy
        self._max_entries = max_entries
        self._verified: dict[str, tuple[AccessClaims, str, float]] = {}

    async def verify(self, token: str) -> AccessClaims:
        entry = self._verified.get(token)
        if entry is not None:
            claims, kid, exp = entry
            # PyJWT's own rule: expired when exp <= now - leeway, on the same clock.
            now = datetime.now(tz=UTC).timestamp()
            if (
                exp > now - self._policy.leeway_seconds
                and self._keys.verification_key(kid) is not None
            ):
                return claims
            del self._verified[token]
        entry = await _verify(self._keys, self._policy, token)
        if len(self._verified) >= self._max_entries:
            # Oldest first: dicts keep insertion order, so this drops the earliest entry.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = entry
        return entry[0]


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token (256 random bits) and the hash we store."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    # A plain SHA-256 suffices: the token has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())
