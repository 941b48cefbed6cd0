"""Users and their Cognito identity: found by (issuer, sub), created on the first request."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tortoise.transactions import in_transaction

from popmap_gql.auth.tokens import TokenClaims
from popmap_gql.db.client import execute, fetch

__all__ = ["StoredUser", "find_user", "provision_user", "update_profile"]

_FIND = """
SELECT u.id, u.username, u.email, u.first_name, u.last_name, u.identity_provider,
       i.profile_complete
FROM cognito_identity i JOIN popmap_user u ON u.id = i.user_id
WHERE i.issuer = $1 AND i.sub = $2
"""


@dataclass(frozen=True, slots=True)
class StoredUser:
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    identity_provider: str
    profile_complete: bool


class _LostRace(Exception):
    """Another request created the same identity first; roll back ours."""


def _fit(value: str | None, length: int) -> str:
    """A claim as a column takes it: NULs left out (a person may type anything into
    their own Cognito attributes, and PostgreSQL's text cannot hold one), cut to size."""
    return (value or "").replace("\x00", "")[:length]


async def find_user(issuer: str, sub: str) -> StoredUser | None:
    rows = await fetch(_FIND, [issuer, sub])
    return StoredUser(**rows[0]) if rows else None


async def provision_user(claims: TokenClaims) -> StoredUser:
    """The user of this identity, created with it in one transaction if it is new.

    Concurrent first requests race on the unique (issuer, sub) constraint: the losers
    roll back their user row and read the winner's. Never matched by email or username.
    """
    found = await find_user(claims.issuer, claims.sub)
    if found is not None:
        return found
    values: list[Any] = [
        _fit(claims.username, 150),
        _fit(claims.email, 254),
        _fit(claims.given_name, 150),
        _fit(claims.family_name, 150),
        _fit(claims.identity_provider or "Cognito", 64),
    ]
    try:
        async with in_transaction() as conn:
            [user] = await fetch(
                "INSERT INTO popmap_user"
                " (username, email, first_name, last_name, identity_provider, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING id",
                values,
                on=conn,
            )
            created = await fetch(
                "INSERT INTO cognito_identity (user_id, issuer, sub, profile_complete, created_at)"
                " VALUES ($1, $2, $3, $4, now()) ON CONFLICT (issuer, sub) DO NOTHING"
                " RETURNING id",
                [user["id"], claims.issuer, claims.sub, claims.is_id_token],
                on=conn,
            )
            if not created:
                raise _LostRace
    except _LostRace:
        pass
    found = await find_user(claims.issuer, claims.sub)
    assert found is not None, "identity vanished right after it was created"
    return found


async def update_profile(
    user: StoredUser,
    *,
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    issuer: str,
    sub: str,
) -> StoredUser:
    """Record a fuller profile (from an ID token or userInfo) and mark it complete."""
    new = replace(
        user,
        email=_fit(email, 254) or user.email,
        first_name=_fit(first_name, 150) or user.first_name,
        last_name=_fit(last_name, 150) or user.last_name,
        profile_complete=True,
    )
    if new == user:
        return user
    async with in_transaction() as conn:
        await execute(
            "UPDATE popmap_user SET email = $2, first_name = $3, last_name = $4,"
            " updated_at = now() WHERE id = $1",
            [user.id, new.email, new.first_name, new.last_name],
            on=conn,
        )
        await execute(
            "UPDATE cognito_identity SET profile_complete = TRUE WHERE issuer = $1 AND sub = $2",
            [issuer, sub],
            on=conn,
        )
    return new
