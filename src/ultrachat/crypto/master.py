"""Key-encryption keys: what wraps the data keys stored in the database.

``KeyProvider`` is the KMS-shaped seam: ``wrap`` and ``unwrap`` a data key, and an id that
says which master key did it. ``LocalMasterKey`` keeps the master key in this process (from
``ULTRACHAT_MASTER_KEY`` or a key file); a cloud KMS or Vault transit provider would
implement the same three members and never reveal its key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)
MASTER_KEY_BYTES = 32
_warned: set[Path] = set()
_NONCE_BYTES = 12


class MasterKeyError(Exception):
    """The master key is missing, malformed, or not the one that wrapped the data keys."""


class KeyProvider(Protocol):
    @property
    def key_id(self) -> str:
        """A fingerprint of the master key (never the key), stored beside each wrapped key."""
        ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalMasterKey:
    """AES-256-GCM key wrapping under a 32-byte master key held in memory."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        self._aead = AESGCM(master_key)
        digest = hmac.new(master_key, b"ultrachat master key id", hashlib.sha256)
        self._key_id = digest.hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise MasterKeyError("a data key failed to unwrap: corrupt or edited") from None


def parse_master_key(text: str) -> bytes:
    """32 bytes from 64 hex digits or (URL-safe or standard) base64."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else b""
    except ValueError:
        raw = b""
    if not raw:
        try:
            raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            "the master key must be 32 random bytes, as 64 hex digits or base64"
            " (make one with: ultrachat keys generate-master)"
        )
    return raw


def new_master_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).decode()


def read_key_file(path: Path) -> bytes:
    try:
        return parse_master_key(path.read_text())
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None


def generated_key_file(path: Path) -> bytes:
    """The embedded default's key file, made (0600) the first time; warns every start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once cannot both write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return read_key_file(path)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_master_key_text() + "\n")
    if path not in _warned:  # once per process
        _warned.add(path)
        log.warning(
            "encryption at rest uses the generated master key %s; in production supply your own"
            " (ULTRACHAT_MASTER_KEY or ULTRACHAT_MASTER_KEY_FILE) and keep it apart from backups",
            path,
        )
    return read_key_file(path)
