"""Encryption at rest: envelope encryption of sealed columns (docs/security.md).

A master key (``master.py``) wraps AES-256 data keys stored in the database
(``keyring.py``); data keys seal column values in a self-describing format bound to their
row (``envelope.py``); ``rewrap.py`` moves rows to a new primary key online and
``inventory.py`` counts and retires keys.
"""

from ultrachat.crypto.envelope import CorruptCiphertext, SealedColumn
from ultrachat.crypto.keyring import DataKeyRing

__all__ = ["CorruptCiphertext", "DataKeyRing", "SealedColumn"]
