"""Data keys: the AES-256-GCM keys that seal columns, wrapped by the master key in the DB.

Every node loads every live data key, encrypts with the one primary key, and decrypts with
whichever key a ciphertext's header names. Use counting: a node reserves encryptions from
the primary key in blocks (one row update per ``block`` encryptions, not per message) and
counts them down locally; a reservation that would pass ``max_uses`` makes a new primary
instead, so no key comes near NIST's 2^32 limit for random nonces. A crashed node's unused
reservation stays counted, which errs on the safe side.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.crypto.envelope import (
    NONCE_BYTES,
    CorruptCiphertext,
    SealedColumn,
    header,
    key_id_of,
)
from ultrachat.crypto.master import KeyProvider, MasterKeyError
from ultrachat.crypto.models import ACTIVE, PRIMARY, RETIRED, DataKey
from ultrachat.metrics.crypto import DATA_KEY_RESERVED_USES, DECRYPT_FAILURES
from ultrachat.storage import Database

log = logging.getLogger(__name__)
DEFAULT_MAX_USES = 2**30  # a quarter of the 2^32 limit (NIST SP 800-38D §8.3)
DEFAULT_BLOCK = 65_536
_HEADER_SIZE = 5
_UNKNOWN_KEY_RELOAD_SECONDS = 1.0
RotationListener = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _LoadedKey:
    id: int
    aead: AESGCM
    header: bytes


def _wrap_context(key_id: int) -> bytes:
    # Binds a wrapped key to its row: swapping two rows' wrapped keys makes both fail.
    return f"ultrachat data key {key_id}".encode()


class DataKeyRing:
    def __init__(
        self,
        db: Database,
        provider: KeyProvider,
        *,
        max_uses: int = DEFAULT_MAX_USES,
        block: int = DEFAULT_BLOCK,
        on_rotated: RotationListener | None = None,
    ) -> None:
        self._db = db
        self._provider = provider
        self._max_uses = max_uses
        self._block = max(1, min(block, max_uses // 4 or 1))
        self._on_rotated = on_rotated
        self._keys: dict[int, _LoadedKey] = {}
        self._primary: _LoadedKey | None = None
        self._remaining = 0
        self._low_water = self._block // 4
        self._reserve_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._last_unknown_refresh = 0.0
        self._topup: asyncio.Task[None] | None = None

    @property
    def primary_id(self) -> int:
        if self._primary is None:
            raise RuntimeError("data key ring not started")
        return self._primary.id

    async def start(self) -> None:
        """Load the keys and reserve a first block, making the first key on a new database."""
        await self.refresh()
        if self._primary is None:
            await self._reserve()

    async def stop(self) -> None:
        if self._topup is not None:
            await asyncio.gather(self._topup, return_exceptions=True)

    # Sealing

    def encrypt(self, column: SealedColumn, row_id: str, plaintext: bytes) -> bytes:
        key = self._draw(1)
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, plaintext, key.header + column.binding(row_id))
        return key.header + nonce + sealed

    def encrypt_text(self, column: SealedColumn, row_id: str, plaintext: str) -> bytes:
        return self.encrypt(column, row_id, plaintext.encode())

    def encrypt_many(self, column: SealedColumn, items: Sequence[tuple[str, str]]) -> list[bytes]:
        """Seal (row id, text) pairs: the group commit's path, one budget check and one
        draw of randomness (a fresh 96-bit nonce each) for the whole batch."""
        key = self._draw(len(items))
        randomness = os.urandom(NONCE_BYTES * len(items))
        encrypt, prefix, sealed = key.aead.encrypt, key.header, []
        for index, (row_id, plaintext) in enumerate(items):
            nonce = randomness[index * NONCE_BYTES : (index + 1) * NONCE_BYTES]
            associated = prefix + column.binding(row_id)
            sealed.append(prefix + nonce + encrypt(nonce, plaintext.encode(), associated))
        return sealed

    def _draw(self, uses: int) -> _LoadedKey:
        """The primary key, with ``uses`` encryptions counted against this node's reserved
        budget; running low starts a top-up in the background (overdraft is paid by it)."""
        key = self._primary
        if key is None:
            raise RuntimeError("data key ring not started")
        self._remaining -= uses
        if self._remaining <= self._low_water and self._topup is None:
            self._topup = asyncio.get_running_loop().create_task(self._top_up())
        return key

    def decrypt(self, column: SealedColumn, row_id: str, blob: bytes) -> bytes:
        """The plaintext; CorruptCiphertext (never empty text) when it does not open."""
        try:
            key_id = key_id_of(column, row_id, blob)
            key = self._keys.get(key_id)
            if key is None:
                raise CorruptCiphertext(column, row_id, f"data key {key_id} is not loaded")
            associated = blob[:_HEADER_SIZE] + column.binding(row_id)
            start = _HEADER_SIZE + NONCE_BYTES
            try:
                return key.aead.decrypt(blob[_HEADER_SIZE:start], blob[start:], associated)
            except InvalidTag:
                raise CorruptCiphertext(column, row_id, "authentication failed") from None
        except CorruptCiphertext as exc:
            DECRYPT_FAILURES.labels(column.name).inc()
            log.error("%s", exc)
            raise

    def decrypt_text(self, column: SealedColumn, row_id: str, blob: bytes) -> str:
        return self.decrypt(column, row_id, blob).decode()

    async def decrypt_many(
        self, column: SealedColumn, items: Sequence[tuple[str, bytes]]
    ) -> list[str | CorruptCiphertext]:
        """Open (row id, ciphertext) pairs as text; a key another node just made is loaded
        first. A ciphertext that fails comes back as its CorruptCiphertext, in place."""
        await self.ensure_loaded(blob for _, blob in items)
        opened: list[str | CorruptCiphertext] = []
        for row_id, blob in items:
            try:
                opened.append(self.decrypt(column, row_id, blob).decode())
            except CorruptCiphertext as exc:
                opened.append(exc)
        return opened

    async def ensure_loaded(self, blobs: Iterable[bytes]) -> None:
        """Reload the key set if a ciphertext names a key this node has not seen yet."""
        if any(self._names_unknown_key(blob) for blob in blobs):
            await self._refresh_for_unknown_key()

    def _names_unknown_key(self, blob: bytes) -> bool:
        if len(blob) < _HEADER_SIZE:
            return False
        return int.from_bytes(blob[1:_HEADER_SIZE], "big") not in self._keys

    # Keys

    async def refresh(self) -> None:
        """Reload the key set; follow a new primary made by another node or the CLI."""
        async with self._refresh_lock:
            await self._refresh()

    async def _refresh_for_unknown_key(self) -> None:
        # A corrupt row naming a key that does not exist would otherwise cost a reload per
        # read; concurrent readers also share one reload.
        if time.monotonic() - self._last_unknown_refresh < _UNKNOWN_KEY_RELOAD_SECONDS:
            return
        self._last_unknown_refresh = time.monotonic()
        await self.refresh()

    async def _refresh(self) -> None:
        async with self._db.sessions() as session:
            rows = (await session.scalars(select(DataKey).where(DataKey.state != RETIRED))).all()
        live = {row.id for row in rows}
        for row in rows:
            if row.id not in self._keys:
                self._keys[row.id] = self._unwrap(row)
        for key_id in set(self._keys) - live:
            del self._keys[key_id]  # retired: its rows are all re-wrapped
        primary = next((row.id for row in rows if row.state == PRIMARY), None)
        if primary is not None and (self._primary is None or self._primary.id != primary):
            await self._reserve()  # move this node's encryptions to the new primary now

    async def rotate(self, reason: str) -> int:
        """Make a new primary key; the old one keeps decrypting. Returns the new key's id."""
        async with self._reserve_lock:
            key_id = await self._replace_primary(uses=0)
        await self._reserve()  # this process encrypts with it from now on
        if self._on_rotated is not None:
            await self._on_rotated(key_id, reason)
        return key_id

    async def _top_up(self) -> None:
        try:
            await self._reserve()
        except Exception:
            log.warning("reserving data key uses failed; retrying in 1 s", exc_info=True)
            await asyncio.sleep(1.0)  # encryptions go on meanwhile, counted as an overdraft
        finally:
            self._topup = None

    async def _reserve(self) -> None:
        async with self._reserve_lock:
            # Encryptions go on while this awaits the database: they draw on the current
            # budget (possibly below zero). Whatever is overdrawn when the reservation is
            # computed is paid by it; what is drawn during the await stays in _remaining.
            overdraft = max(0, -self._remaining)
            need = self._block + overdraft
            previous = self._primary.id if self._primary is not None else None
            row, rotated = await self._reserve_from_primary(need)
            # Adopted only now, after the commit: a key whose row did not commit must never
            # seal anything.
            self._adopt(row)
            if row.id == previous:
                self._remaining += need
            else:
                self._remaining = self._block  # the old key's unused reservation stays counted
        if rotated is not None and self._on_rotated is not None:
            await self._on_rotated(rotated, "usage limit" if len(self._keys) > 1 else "first key")

    async def _reserve_from_primary(self, need: int) -> tuple[DataKey, int | None]:
        """Count ``need`` uses against the primary (or a new one, whose id is returned too)."""
        for _attempt in range(5):
            try:
                async with self._db.transaction() as session:
                    query = select(DataKey).where(DataKey.state == PRIMARY).with_for_update()
                    row = (await session.scalars(query)).first()
                    if row is not None and row.uses + need <= self._max_uses:
                        row.uses += need
                        DATA_KEY_RESERVED_USES.labels(str(row.id)).set(row.uses)
                        return row, None
                    if row is not None:
                        row.state = ACTIVE
                        await session.flush()
                    new = await self._insert_primary(session, uses=need)
                return new, new.id
            except IntegrityError:
                continue  # another node made the primary at the same moment: use theirs
        raise RuntimeError("could not reserve data key uses: the primary key keeps changing")

    async def _replace_primary(self, uses: int) -> int:
        async with self._db.transaction() as session:
            query = select(DataKey).where(DataKey.state == PRIMARY).with_for_update()
            for row in (await session.scalars(query)).all():
                row.state = ACTIVE
            await session.flush()
            new = await self._insert_primary(session, uses=uses)
            self._keys[new.id] = self._unwrap(new)
            return new.id

    async def _insert_primary(self, session: AsyncSession, uses: int) -> DataKey:
        row = DataKey(
            state=PRIMARY, kek_id=self._provider.key_id, uses=uses, created_at=datetime.now(UTC)
        )
        session.add(row)
        await session.flush()  # assigns the id, which the wrapping binds
        row.wrapped = self._provider.wrap(AESGCM.generate_key(256), _wrap_context(row.id))
        await session.flush()
        DATA_KEY_RESERVED_USES.labels(str(row.id)).set(uses)
        return row

    def _adopt(self, row: DataKey) -> None:
        key = self._keys.get(row.id) or self._unwrap(row)
        self._keys[row.id] = key
        self._primary = key

    def _unwrap(self, row: DataKey) -> _LoadedKey:
        if row.kek_id != self._provider.key_id:
            raise MasterKeyError(
                f"data key {row.id} was wrapped by master key {row.kek_id}, but this process"
                f" has {self._provider.key_id}: is ULTRACHAT_MASTER_KEY the deployment's key?"
            )
        if row.wrapped is None:
            raise MasterKeyError(f"data key {row.id} has no key material")
        raw = self._provider.unwrap(row.wrapped, _wrap_context(row.id))
        return _LoadedKey(row.id, AESGCM(raw), header(row.id))
