"""Auth's public read interface: how other services learn about users without its tables."""

from __future__ import annotations

from collections.abc import Sequence

from ultrachat.auth import repository
from ultrachat.storage import Database


class UserDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def existing(self, user_ids: Sequence[str]) -> set[str]:
        """Which of ``user_ids`` belong to registered users."""
        async with self._db.sessions() as session:
            return await repository.existing_user_ids(session, list(set(user_ids)))

    async def ids_by_username(self, usernames: Sequence[str]) -> dict[str, str]:
        """Lower-cased username → user id, for the usernames that exist."""
        async with self._db.sessions() as session:
            return await repository.user_ids_by_username(session, list(set(usernames)))
