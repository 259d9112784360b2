"""RS256 signing keys: generation, rotation, and the set that verifies.

Keys live in the database so that every node signs and verifies with the same set; the
private keys are sealed by the data key ring (crypto/), bound to their kid. The newest key
signs. A key stays in the verification set (and in the JWKS) until every token it
could have signed has expired, i.e. for one access-token lifetime plus leeway after the next
key took over; "tokens signed by the previous key stay valid until they expire".
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ultrachat.auth import repository
from ultrachat.crypto import DataKeyRing
from ultrachat.crypto.columns import SIGNING_KEY
from ultrachat.storage import Database, new_id

RSA_BITS = 2048
# An unknown kid triggers a reload at most this often, so forged kids cannot flood the DB.
_RELOAD_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    created_at: datetime
    private_key: rsa.RSAPrivateKey
    public_key: rsa.RSAPublicKey

    def jwk(self) -> dict[str, str]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_key_pair() -> tuple[str, str]:
    """A new RSA key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


async def rotate(db: Database, ring: DataKeyRing) -> str:
    """Create a new signing key; it signs from the next reload on. Returns its kid."""
    sealed = await _new_key(ring)
    async with db.transaction() as session:
        await repository.add_signing_key(session, *sealed, datetime.now(UTC))
    return sealed[0]


async def create_first_key(db: Database, ring: DataKeyRing) -> None:
    """The first key of a fresh deployment, made once however many processes start together
    (``serve --workers N``, several nodes): they take turns on a lock and only the first
    finds no key. Otherwise each would sign with a key of its own until its next reload,
    and refuse the others' tokens."""
    sealed = await _new_key(ring)
    async with db.transaction() as session:
        await repository.lock_signing_keys(session)
        if not await repository.list_signing_keys(session):
            await repository.add_signing_key(session, *sealed, datetime.now(UTC))


async def _new_key(ring: DataKeyRing) -> tuple[str, bytes, str]:
    """(kid, sealed private PEM, public PEM) of a new key pair."""
    private_pem, public_pem = await asyncio.to_thread(generate_key_pair)
    kid = new_id()
    return kid, ring.encrypt_text(SIGNING_KEY, kid, private_pem), public_pem


class KeyRing:
    """The keys this deployment signs and verifies with, reloaded from the database."""

    def __init__(self, db: Database, token_lifetime: timedelta, ring: DataKeyRing) -> None:
        self._db = db
        self._ring = ring
        self._retire_after = token_lifetime
        self._keys: dict[str, LoadedKey] = {}
        self._signing: LoadedKey | None = None
        self._last_reload = 0.0
        self._lock = asyncio.Lock()

    async def ensure_initialized(self) -> None:
        """Load the keys, generating the first pair on a fresh deployment."""
        await self.reload()
        if self._signing is None:
            await create_first_key(self._db, self._ring)
            await self.reload()

    async def reload(self) -> None:
        async with self._lock:
            async with self._db.sessions() as session:
                rows = await repository.list_signing_keys(session)
            await self._ring.ensure_loaded(row.private_pem for row in rows)
            # A key that fails to open raises CorruptCiphertext: no node signs with less.
            pems = [self._ring.decrypt(SIGNING_KEY, row.kid, row.private_pem) for row in rows]
            loaded = [
                await asyncio.to_thread(_load, row.kid, row.created_at, pem)
                for row, pem in zip(rows, pems, strict=True)
            ]
            self._keys, self._signing = _verification_set(loaded, self._retire_after)
            self._last_reload = time.monotonic()

    @property
    def signing_key(self) -> LoadedKey:
        if self._signing is None:
            raise RuntimeError("key ring not initialized")
        return self._signing

    def verification_key(self, kid: str) -> LoadedKey | None:
        return self._keys.get(kid)

    async def verification_key_or_reload(self, kid: str) -> LoadedKey | None:
        """Look ``kid`` up; an unknown one may be a key another node just made."""
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._last_reload > _RELOAD_INTERVAL_SECONDS:
            await self.reload()
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self._keys.values()]}


def _load(kid: str, created_at: datetime, private_pem: bytes) -> LoadedKey:
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError(f"signing key {kid} is not RSA")
    return LoadedKey(kid, created_at, private_key, private_key.public_key())


def _verification_set(
    keys: list[LoadedKey], retire_after: timedelta
) -> tuple[dict[str, LoadedKey], LoadedKey | None]:
    """The newest key signs; an older key verifies until its successor is ``retire_after`` old."""
    ordered = sorted(keys, key=lambda k: k.created_at, reverse=True)
    if not ordered:
        return {}, None
    now = datetime.now(UTC)
    kept = {ordered[0].kid: ordered[0]}
    for newer, older in itertools.pairwise(ordered):
        if now - newer.created_at > retire_after:
            break
        kept[older.kid] = older
    return kept, ordered[0]
