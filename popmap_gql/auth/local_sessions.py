"""The local identity provider's sign-ins: authorization codes and refresh tokens.

Both live in PostgreSQL (migration 0010), not in a process's memory: under `serve
--workers N` the hosted UI's sign-in page, the token endpoint and the user-pool API may
each be answered by another worker, and a code must be usable once across all of them. A
self-contained signed code would still need a shared record of the codes already used,
and revoking refresh tokens needs a shared record too, so the rows are the state itself.
Only SHA-256 hashes of codes and refresh tokens are stored.

A session is one sign-in: its refresh token, the person it signed in and the scopes
granted. Its id is the `origin_jti` claim of every token issued from it, which is how
Cognito ties access tokens to the refresh token that revoking them ends.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from popmap_gql.auth.local_idp import (
    LOCAL_CLIENT_ID,
    LOCAL_POOL_ID,
    LocalIdentityProvider,
    local_sub,
)
from popmap_gql.db.client import execute, fetch

__all__ = [
    "CODE_SECONDS",
    "REFRESH_TOKEN_DAYS",
    "TOKEN_SECONDS",
    "Grant",
    "LocalPerson",
    "Session",
    "create_session",
    "find_session",
    "issue_code",
    "mint_tokens",
    "redeem_code",
    "revoke_everywhere",
    "revoke_session",
    "session_of_refresh_token",
]

# Cognito's own figures: codes last 5 minutes, access and ID tokens an hour, refresh
# tokens 30 days (the app client defaults).
CODE_SECONDS = 300
TOKEN_SECONDS = 3600
REFRESH_TOKEN_DAYS = 30

# The fake federated providers the sign-in page offers, by Cognito's `identity_provider`.
FEDERATED_PROVIDERS = ("Facebook",)


@dataclass(frozen=True, slots=True)
class LocalPerson:
    """Who signs in on the local sign-in page: an email, groups, and the provider."""

    email: str
    groups: tuple[str, ...] = ()
    provider: str | None = None  # None: the pool's own user; "Facebook": federated

    @property
    def sub(self) -> str:
        """A federated user is another user of the pool than the native one of the same
        email (until linked), so another `sub`."""
        key = self.email if self.provider is None else f"{self.provider}:{self.email}"
        return local_sub(key)

    @property
    def provider_user_id(self) -> str:
        """The user's id at the fake provider: digits, as Facebook's are."""
        digest = hashlib.sha256(f"{self.provider}:{self.email.lower()}".encode()).digest()
        return str(int.from_bytes(digest[:7], "big"))

    @property
    def username(self) -> str:
        """Cognito's username: the `sub` for a native user when email is the sign-in
        alias, `<Provider>_<id at the provider>` for a federated one."""
        if self.provider is None:
            return self.sub
        return f"{self.provider}_{self.provider_user_id}"

    @property
    def token_groups(self) -> list[str]:
        """The groups in the tokens: Cognito adds federated users to the automatic group
        `<pool id>_<Provider>`."""
        groups = list(self.groups)
        if self.provider is not None:
            groups.append(f"{LOCAL_POOL_ID}_{self.provider}")
        return groups

    def identities(self, created: datetime) -> list[dict[str, Any]]:
        """The `identities` claim of a federated user's ID token (empty for a native one)."""
        if self.provider is None:
            return []
        return [
            {
                "userId": self.provider_user_id,
                "providerName": self.provider,
                "providerType": self.provider,
                "issuer": None,
                "primary": "true",
                "dateCreated": str(int(created.timestamp() * 1000)),
            }
        ]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, value: str) -> LocalPerson:
        data = json.loads(value)
        return cls(data["email"], tuple(data["groups"]), data["provider"])


@dataclass(frozen=True, slots=True)
class Grant:
    """What a redeemed authorization code was issued for."""

    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    person: LocalPerson
    nonce: str | None
    fresh: bool  # not yet expired


@dataclass(frozen=True, slots=True)
class Session:
    origin_jti: str
    person: LocalPerson
    scopes: tuple[str, ...]
    auth_time: datetime
    expired: bool
    revoked: bool


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_code(
    *,
    redirect_uri: str,
    code_challenge: str,
    scopes: tuple[str, ...],
    person: LocalPerson,
    nonce: str | None,
) -> str:
    """A new authorization code for this sign-in, usable once within CODE_SECONDS."""
    code = secrets.token_urlsafe(32)
    await execute("DELETE FROM local_idp_code WHERE expires_at < now()")
    await execute(
        "INSERT INTO local_idp_code (code_hash, client_id, redirect_uri, code_challenge,"
        " scopes, person, nonce, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now() + make_interval(secs => $8))",
        [
            _hash(code),
            LOCAL_CLIENT_ID,
            redirect_uri,
            code_challenge,
            list(scopes),
            person.to_json(),
            nonce,
            CODE_SECONDS,
        ],
    )
    return code


async def redeem_code(code: str) -> Grant | None:
    """The grant of `code`, which is used up by this call whatever its outcome (a
    second attempt, even after a wrong verifier, finds nothing); None if unknown."""
    rows = await fetch(
        "DELETE FROM local_idp_code WHERE code_hash = $1 RETURNING redirect_uri, code_challenge,"
        " scopes, person, nonce, expires_at > now() AS fresh",
        [_hash(code)],
    )
    return Grant(**_decoded(rows[0])) if rows else None


_SESSION_COLUMNS = (
    "origin_jti::text AS origin_jti, person, scopes, auth_time,"
    " expires_at <= now() AS expired, revoked_at IS NOT NULL AS revoked"
)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row of codes or sessions, its columns named as the fields of Grant or Session."""
    return {**row, "person": LocalPerson.from_json(row["person"]), "scopes": tuple(row["scopes"])}


async def _session_where(
    column: Literal["refresh_token_hash", "origin_jti"], value: object
) -> Session | None:
    rows = await fetch(
        f"SELECT {_SESSION_COLUMNS} FROM local_idp_session WHERE {column} = $1",  # noqa: S608
        [value],
    )
    return Session(**_decoded(rows[0])) if rows else None


async def create_session(person: LocalPerson, scopes: tuple[str, ...]) -> tuple[Session, str]:
    """A new sign-in and its refresh token (returned once, stored only as a hash)."""
    refresh_token = secrets.token_urlsafe(48)
    await execute("DELETE FROM local_idp_session WHERE expires_at < now()")
    rows = await fetch(
        "INSERT INTO local_idp_session (origin_jti, refresh_token_hash, client_id, sub,"  # noqa: S608
        " person, scopes, expires_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, now() + make_interval(days => $7))"
        f" RETURNING {_SESSION_COLUMNS}",  # the columns are a constant
        [
            uuid.uuid4(),
            _hash(refresh_token),
            LOCAL_CLIENT_ID,
            person.sub,
            person.to_json(),
            list(scopes),
            REFRESH_TOKEN_DAYS,
        ],
    )
    return Session(**_decoded(rows[0])), refresh_token


async def session_of_refresh_token(refresh_token: str) -> Session | None:
    return await _session_where("refresh_token_hash", _hash(refresh_token))


async def find_session(origin_jti: str) -> Session | None:
    """The session a token's `origin_jti` names: a uuid, as only mint_tokens puts one in
    a token the local provider signs."""
    return await _session_where("origin_jti", uuid.UUID(origin_jti))


async def revoke_session(origin_jti: str) -> None:
    await execute(
        "UPDATE local_idp_session SET revoked_at = now()"
        " WHERE origin_jti = $1 AND revoked_at IS NULL",
        [uuid.UUID(origin_jti)],
    )


async def revoke_everywhere(sub: str) -> None:
    """Revoke every session of this user (GlobalSignOut)."""
    await execute(
        "UPDATE local_idp_session SET revoked_at = now() WHERE sub = $1 AND revoked_at IS NULL",
        [sub],
    )


def mint_tokens(
    idp: LocalIdentityProvider,
    session: Session,
    *,
    nonce: str | None = None,
) -> dict[str, str]:
    """Access and ID tokens of this session, as Cognito issues them after a sign-in or a
    refresh: the same `origin_jti` and `auth_time`, a new `event_id` per issue. Without
    the `openid` scope Cognito issues no ID token."""
    person = session.person
    identity_claims: dict[str, Any] = {}
    if identities := person.identities(session.auth_time):
        identity_claims["identities"] = identities
    if nonce is not None:
        identity_claims["nonce"] = nonce
    tokens = idp.mint(
        person.email,
        person.token_groups,
        ttl_seconds=TOKEN_SECONDS,
        sub=person.sub,
        username=person.username,
        scopes=session.scopes,
        session={
            "origin_jti": session.origin_jti,
            "event_id": str(uuid.uuid4()),
            "auth_time": int(session.auth_time.timestamp()),
        },
        identity_claims=identity_claims,
    )
    if "openid" not in session.scopes:
        del tokens["id_token"]
    return tokens
