"""Build the key provider and data key ring from settings (the server and the CLI alike)."""

from __future__ import annotations

from ultrachat.config import Settings
from ultrachat.crypto.keyring import DataKeyRing, RotationListener
from ultrachat.crypto.master import (
    KeyProvider,
    LocalMasterKey,
    MasterKeyError,
    generated_key_file,
    parse_master_key,
    read_key_file,
)
from ultrachat.storage import Database


def key_provider(settings: Settings) -> KeyProvider:
    if settings.master_key is not None:
        return LocalMasterKey(parse_master_key(settings.master_key.get_secret_value()))
    if settings.master_key_file is not None:
        return LocalMasterKey(read_key_file(settings.master_key_file))
    if settings.is_postgres:
        raise MasterKeyError(
            "set ULTRACHAT_MASTER_KEY or ULTRACHAT_MASTER_KEY_FILE: with PostgreSQL every node"
            " must share one master key (make one with: ultrachat keys generate-master)"
        )
    return LocalMasterKey(generated_key_file(settings.data_dir / "master.key"))


def data_key_ring(
    settings: Settings, db: Database, on_rotated: RotationListener | None = None
) -> DataKeyRing:
    return DataKeyRing(
        db, key_provider(settings), max_uses=settings.data_key_max_uses, on_rotated=on_rotated
    )
