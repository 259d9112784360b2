"""Storage: async SQLAlchemy engines over SQLite (embedded) or PostgreSQL (at scale)."""

from ultrachat.storage.database import Database
from ultrachat.storage.ids import new_id

__all__ = ["Database", "new_id"]
