"""Every column that holds ciphertext. A new secret column is one line here plus the calls
to ``DataKeyRing.encrypt``/``decrypt`` where it is written and read; the re-wrap job, the
key inventory and retirement then cover it with no further code (docs/security.md)."""

from __future__ import annotations

from ultrachat.crypto.envelope import SealedColumn

MESSAGE_BODY = SealedColumn("messages", "body", ("id",), locator_keys=("created_at",))
# Event frames carry message bodies (message.created, message.updated): the edit history.
EVENT_DATA = SealedColumn("channel_events", "data", ("channel_id", "seq"))
SIGNING_KEY = SealedColumn("signing_keys", "private_pem", ("kid",))

SEALED_COLUMNS: tuple[SealedColumn, ...] = (MESSAGE_BODY, EVENT_DATA, SIGNING_KEY)
