"""The upload table as the commands and `media gc` use it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from popmap_gql.db.client import Connection, fetch
from popmap_gql.db.powers import Audience
from popmap_gql.errors import BadUserInput

__all__ = [
    "ClaimedUpload",
    "UploadOwner",
    "delete_uploads_before",
    "mark_used",
    "referenced_keys",
]


@dataclass(frozen=True, slots=True)
class UploadOwner:
    """Whom an upload belongs to: a person (user_id) or a service (client_id), never both,
    as media_upload's CHECK says. Only its owner may save an upload."""

    user_id: int | None = None
    client_id: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.client_id is None):
            raise ValueError("an upload has exactly one owner: a user or a client")

    @classmethod
    def of(cls, audience: Audience) -> UploadOwner:
        """The owner a signed-in audience uploads as (the mutations that take uploads
        are for the signed-in only)."""
        if audience.client_id is not None:
            return cls(client_id=audience.client_id)
        return cls(user_id=audience.user_id)

    @property
    def column(self) -> dict[str, int | str]:
        """The owner column of media_upload that is set, to filter on: the other is NULL
        on every row of this owner."""
        if self.client_id is not None:
            return {"client_id": self.client_id}
        assert self.user_id is not None  # __post_init__
        return {"user_id": self.user_id}

    def owns(self, user_id: int | None, client_id: str | None) -> bool:
        return user_id == self.user_id and client_id == self.client_id


@dataclass(frozen=True, slots=True)
class ClaimedUpload:
    """An upload whose object was checked and published, ready to be saved on a row."""

    upload_key: str
    published_key: str
    owner: UploadOwner
    field: str


async def mark_used(conn: Connection, claimed: ClaimedUpload) -> None:
    """Spend the upload in the writer's transaction: two saves of one key cannot both win."""
    used = await fetch(
        "UPDATE media_upload SET used_at = now()"
        " WHERE key = $1 AND user_id IS NOT DISTINCT FROM $2"
        " AND client_id IS NOT DISTINCT FROM $3 AND used_at IS NULL AND expires_at > now()"
        " RETURNING id",
        [claimed.upload_key, claimed.owner.user_id, claimed.owner.client_id],
        on=conn,
    )
    if not used:
        raise BadUserInput("this upload was already used or has expired", field=claimed.field)


async def referenced_keys(keys: Sequence[str]) -> set[str]:
    """Which of these published keys a business or an event shows."""
    rows = await fetch(
        "SELECT logo_key AS key FROM business WHERE logo_key = ANY($1::text[])"
        " UNION SELECT image_key FROM event WHERE image_key = ANY($1::text[])",
        [list(keys)],
    )
    return {row["key"] for row in rows}


async def delete_uploads_before(cutoff: datetime) -> int:
    """Forget uploads issued before `cutoff`: spent, expired, or never sent."""
    rows = await fetch("DELETE FROM media_upload WHERE created_at < $1 RETURNING id", [cutoff])
    return len(rows)
