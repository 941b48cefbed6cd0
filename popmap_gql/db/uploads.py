"""The upload table as the commands and `media gc` use it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import connections

from popmap_gql.errors import BadUserInput

__all__ = ["ClaimedUpload", "delete_uploads_before", "mark_used", "referenced_keys"]


@dataclass(frozen=True, slots=True)
class ClaimedUpload:
    """An upload whose object was checked and published, ready to be saved on a row."""

    upload_key: str
    published_key: str
    user_id: int
    field: str


async def mark_used(conn: BaseDBAsyncClient, claimed: ClaimedUpload) -> None:
    """Spend the upload in the writer's transaction: two saves of one key cannot both win."""
    used = await conn.execute_query_dict(
        "UPDATE media_upload SET used_at = now()"
        " WHERE key = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now()"
        " RETURNING id",
        [claimed.upload_key, claimed.user_id],
    )
    if not used:
        raise BadUserInput("this upload was already used or has expired", field=claimed.field)


async def referenced_keys(keys: Sequence[str]) -> set[str]:
    """Which of these published keys a business or an event shows."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT logo_key AS key FROM business WHERE logo_key = ANY($1::text[])"
        " UNION SELECT image_key FROM event WHERE image_key = ANY($1::text[])",
        [list(keys)],
    )
    return {row["key"] for row in rows}


async def delete_uploads_before(cutoff: datetime) -> int:
    """Forget uploads issued before `cutoff`: spent, expired, or never sent."""
    rows = await connections.get("default").execute_query_dict(
        "DELETE FROM media_upload WHERE created_at < $1 RETURNING id", [cutoff]
    )
    return len(rows)
