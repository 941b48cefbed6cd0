"""The floor: the least work that gives the same answers as the real API.

A Starlette app with one asyncpg pool. POST /graphql recognises each benchmark scenario
by its operationName (the query text is not parsed) and answers with the JSON the real
API gives, built by PostgreSQL in one hand-written statement per request (the viewer's
lookup by (issuer, sub) included) and sent as the bytes PostgreSQL returned. Tokens are
verified for real: RS256 with the local identity provider's public key.

    DATABASE_URL=... POPMAP_DATA_DIR=bench/.data/app \\
        .venv/bin/python -m uvicorn bench.floor:app --port 8100

GET /stats -> {"statements": N}: SQL statements executed since start.
GET /healthz -> {"status": "ok"} once the pool is up.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from popmap_gql.auth.local_idp import LOCAL_CLIENT_ID, LOCAL_ISSUER
from popmap_gql.db.orm import connection_credentials

POOL_SIZE = 10  # the real server's default POPMAP_DB_POOL_SIZE
MAX_PAGE_SIZE = 100
AVAILABLE_EVENTS_LIMIT = 100
TOKEN_LEEWAY_SECONDS = 30
STAFF_GROUP = "staff"
JSON_TYPE = "application/json"


# --- SQL fragments ----------------------------------------------------------------------


def gid(type_name: str, column: str) -> str:
    """SQL for the opaque id of `column`: base64url of "Type:pk", no padding."""
    raw = f"encode(convert_to('{type_name}:' || {column}, 'UTF8'), 'base64')"
    return f"rtrim(translate({raw}, '+/', '-_'), '=')"


def iso(column: str) -> str:
    """SQL for Python's datetime.isoformat() of a UTC timestamptz."""
    return (
        f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN to_char({column}, 'US') = '000000' THEN ''"
        f" ELSE '.' || to_char({column}, 'US') END || '+00:00'"
    )


def json_list(select: str) -> str:
    """A JSON array of the single column of `select` ([] when it has no rows)."""
    return f"COALESCE(({select}), '[]'::json)"


# The viewer: $1 issuer, $2 sub (NULL when anonymous), $3 staff. Every statement starts
# with it, so the identity lookup costs no statement of its own.
VIEWER = (
    "v AS (SELECT (SELECT i.user_id FROM cognito_identity i"
    " WHERE i.issuer = $1 AND i.sub = $2) AS uid, $3::boolean AS staff)"
)
VISIBLE_EVENT = "(v.staff OR e.status = 'APPROVED' OR e.created_by_id = v.uid)"
VISIBLE_BUSINESS = "(v.staff OR b.is_verified OR b.owner_id = v.uid)"


def _business_categories(business: str, with_slug: bool) -> str:
    slug = ", 'slug', c.slug" if with_slug else ""
    return json_list(
        f"SELECT json_agg(json_build_object('id', {gid('Category', 'c.id')}, 'name', c.name"
        f"{slug}) ORDER BY c.name, c.id)"
        " FROM business_category bc JOIN category c ON c.id = bc.category_id"
        f" WHERE bc.business_id = {business}"
    )


# Q1: a page of events with their visible businesses (in joining order, each with its
# categories) and the distinct categories of those businesses. The API sorts the
# latter in Python, by code point: COLLATE "C" does the same whatever the database's
# collation. $4 ends after (or NULL), $5 page size. Each step is one grouped pass
# over the page's rows, not a subquery per business.
Q1_SQL = f"""
WITH {VIEWER},
page AS (
  SELECT e.id, e.title, e.starts_at, e.ends_at, e.latitude, e.longitude
  FROM event e, v
  WHERE {VISIBLE_EVENT} AND ($4::timestamptz IS NULL OR e.ends_at >= $4)
  ORDER BY e.starts_at, e.id
  LIMIT $5
),
cat AS (
  SELECT c.id, c.name, json_build_object('id', {gid("Category", "c.id")}, 'name', c.name) AS obj
  FROM category c
),
part AS (
  SELECT pa.event_id, pa.joined_at, pa.id, b.id AS business_id, b.name
  FROM page p
  JOIN participation pa ON pa.event_id = p.id
  JOIN business b ON b.id = pa.business_id, v
  WHERE {VISIBLE_BUSINESS}
),
part_cat AS (
  SELECT part.event_id, part.business_id, bc.category_id
  FROM part JOIN business_category bc ON bc.business_id = part.business_id
),
business_cats AS (
  SELECT bc.business_id, json_agg(cat.obj ORDER BY cat.name, cat.id) AS categories
  FROM (SELECT DISTINCT business_id, category_id FROM part_cat) bc
  JOIN cat ON cat.id = bc.category_id
  GROUP BY bc.business_id
),
event_businesses AS (
  SELECT part.event_id,
    json_agg(json_build_object(
      'id', {gid("Business", "part.business_id")}, 'name', part.name,
      'categories', COALESCE(bcs.categories, '[]'::json))
    ORDER BY part.joined_at, part.id) AS businesses
  FROM part LEFT JOIN business_cats bcs ON bcs.business_id = part.business_id
  GROUP BY part.event_id
),
event_cats AS (
  SELECT ec.event_id, json_agg(cat.obj ORDER BY cat.name COLLATE "C", cat.id) AS categories
  FROM (SELECT DISTINCT event_id, category_id FROM part_cat) ec
  JOIN cat ON cat.id = ec.category_id
  GROUP BY ec.event_id
),
edges AS (
  SELECT json_agg(json_build_object('node', json_build_object(
      'id', {gid("Event", "p.id")}, 'title', p.title,
      'startsAt', {iso("p.starts_at")}, 'endsAt', {iso("p.ends_at")},
      'latitude', p.latitude, 'longitude', p.longitude,
      'businesses', COALESCE(eb.businesses, '[]'::json),
      'categories', COALESCE(ec.categories, '[]'::json)))
    ORDER BY p.starts_at, p.id) AS edges
  FROM page p
  LEFT JOIN event_businesses eb ON eb.event_id = p.id
  LEFT JOIN event_cats ec ON ec.event_id = p.id
)
SELECT v.uid, json_build_object('data', json_build_object('events', json_build_object(
  'edges', COALESCE((SELECT edges FROM edges), '[]'::json))))
FROM v
"""

# Q2: one business, if visible, with its categories and the visible events it takes
# part in (only those not ended when $5). $4 business id. NULL when not visible.
_Q2_EVENTS = json_list(
    "SELECT json_agg(json_build_object("
    f"'id', {gid('Event', 'e.id')}, 'title', e.title,"
    f" 'startsAt', {iso('e.starts_at')}, 'endsAt', {iso('e.ends_at')})"
    " ORDER BY e.starts_at, e.id)"
    " FROM participation pa JOIN event e ON e.id = pa.event_id"
    f" WHERE pa.business_id = b.id AND {VISIBLE_EVENT} AND (NOT $5 OR e.ends_at >= now())"
)
_Q2_BUSINESS = (
    f"json_build_object('id', {gid('Business', 'b.id')}, 'name', b.name,"
    " 'description', b.description,"
    f" 'categories', {_business_categories('b.id', with_slug=True)}, 'events', {_Q2_EVENTS})"
)
Q2_SQL = f"""
WITH {VIEWER}
SELECT v.uid, (
  SELECT json_build_object('data', json_build_object('business', {_Q2_BUSINESS}))
  FROM business b WHERE b.id = $4 AND {VISIBLE_BUSINESS}
)
FROM v
"""

# Q3: the viewer and every business they own, each with the approved events not yet
# ended that it has not joined (soonest first, at most $4).
_Q3_AVAILABLE = json_list(
    "SELECT json_agg(json_build_object("
    f"'id', {gid('Event', 'a.id')}, 'title', a.title, 'startsAt', {iso('a.starts_at')})"
    " ORDER BY a.starts_at, a.id)"
    " FROM (SELECT e.id, e.title, e.starts_at FROM event e"
    "   WHERE e.status = 'APPROVED' AND e.ends_at >= now()"
    "   AND NOT EXISTS (SELECT 1 FROM participation p"
    "                   WHERE p.event_id = e.id AND p.business_id = b.id)"
    "   ORDER BY e.starts_at, e.id LIMIT $4) a"
)
_Q3_BUSINESSES = json_list(
    "SELECT json_agg(json_build_object("
    f"'id', {gid('Business', 'b.id')}, 'name', b.name, 'availableEvents', {_Q3_AVAILABLE})"
    " ORDER BY b.name, b.id) FROM business b WHERE b.owner_id = v.uid"
)
Q3_SQL = f"""
WITH {VIEWER}
SELECT v.uid, json_build_object('data', json_build_object('me', CASE
  WHEN v.uid IS NULL THEN NULL
  ELSE json_build_object('id', {gid("User", "v.uid")}, 'businesses', {_Q3_BUSINESSES}) END))
FROM v
"""


def _m1_sql(field: str, event_found: str, lock: str, command_checks: str, write: str) -> str:
    """joinEvent/leaveEvent in one statement: the checks of the API, in its order (the
    business and its owner, then the event and the join's conditions), then the write. $4 event id,
    $5 business id. Answers (outcome, payload); payload only when outcome is OK."""
    return f"""
WITH {VIEWER},
biz AS (SELECT b.id, b.owner_id, b.is_verified FROM business b, v
        WHERE b.id = $5 AND {VISIBLE_BUSINESS}),
ev AS (SELECT e.id, e.status, e.ends_at FROM event e, v
       WHERE e.id = $4 AND ({event_found}) {lock}),
verdict AS (SELECT CASE
  WHEN v.uid IS NULL THEN 'UNKNOWN_VIEWER'
  WHEN NOT EXISTS (SELECT 1 FROM biz) THEN 'NO_BUSINESS'
  WHEN NOT (v.staff OR EXISTS (SELECT 1 FROM biz WHERE biz.owner_id = v.uid)) THEN 'FORBIDDEN'
  WHEN NOT EXISTS (SELECT 1 FROM ev) THEN 'NO_EVENT'
  {command_checks}
  ELSE 'OK' END AS outcome FROM v),
written AS ({write} RETURNING id)
SELECT verdict.outcome, CASE WHEN verdict.outcome = 'OK' THEN
  json_build_object('data', json_build_object('{field}', json_build_object(
    'changed', EXISTS (SELECT 1 FROM written),
    'event', json_build_object('id', {gid("Event", "$4::bigint")}),
    'business', json_build_object('id', {gid("Business", "$5::bigint")}))))
  END
FROM verdict
"""


JOIN_SQL = _m1_sql(
    "joinEvent",
    VISIBLE_EVENT,
    "FOR NO KEY UPDATE OF e",  # like the API: moderation waits until the join is done
    "WHEN NOT (SELECT is_verified FROM biz) THEN 'NOT_VERIFIED'"
    " WHEN (SELECT status FROM ev) <> 'APPROVED' THEN 'NOT_APPROVED'"
    " WHEN (SELECT ends_at FROM ev) < now() THEN 'ENDED'",
    "INSERT INTO participation (business_id, event_id, joined_at)"
    " SELECT $5, $4, now() FROM verdict WHERE verdict.outcome = 'OK'"
    " ON CONFLICT (business_id, event_id) DO NOTHING",
)
LEAVE_SQL = _m1_sql(
    "leaveEvent",
    # an event no longer visible may still be left by a business taking part in it
    f"{VISIBLE_EVENT} OR EXISTS (SELECT 1 FROM participation p"
    " WHERE p.event_id = $4 AND p.business_id = $5)",
    "",
    "",
    "DELETE FROM participation p WHERE p.business_id = $5 AND p.event_id = $4"
    " AND (SELECT verdict.outcome FROM verdict) = 'OK'",
)

M1_ERRORS = {
    "UNKNOWN_VIEWER": ("UNAUTHENTICATED", "the floor does not create users"),
    "NO_BUSINESS": ("NOT_FOUND", "no such business"),
    "FORBIDDEN": ("FORBIDDEN", "only the business's owner or staff may do this"),
    "NO_EVENT": ("NOT_FOUND", "no such event"),
    "NOT_VERIFIED": ("BAD_USER_INPUT", "the business is not verified yet"),
    "NOT_APPROVED": ("BAD_USER_INPUT", "only approved events can be joined"),
    "ENDED": ("BAD_USER_INPUT", "the event has ended"),
}


# --- requests ---------------------------------------------------------------------------


class RequestError(Exception):
    """An answer with errors; `data` is what the API answers beside them."""

    def __init__(
        self, status: int, code: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


@dataclass(frozen=True, slots=True)
class Viewer:
    sub: str | None = None
    staff: bool = False

    def params(self) -> tuple[str, str | None, bool]:
        return (LOCAL_ISSUER, self.sub, self.staff)


ANONYMOUS = Viewer()


class Floor:
    """The pool, the public key and a count of statements executed."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.public_key = _public_key(data_dir / "local-idp" / "private-key.pem")
        self.pool: asyncpg.Pool | None = None
        self.statements = 0

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            **connection_credentials(self.database_url),
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            init=_raw_json,
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record:
        assert self.pool is not None
        self.statements += 1
        row: asyncpg.Record = await self.pool.fetchrow(sql, *args)
        return row

    def viewer(self, authorization: str | None) -> Viewer:
        """The token's subject, verified as the API does; no header is anonymous."""
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RequestError(401, "UNAUTHENTICATED", "Authorization must be 'Bearer <token>'")
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                issuer=LOCAL_ISSUER,
                leeway=TOKEN_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise RequestError(401, "UNAUTHENTICATED", f"invalid token: {exc}") from exc
        client = (
            claims.get("client_id") if claims.get("token_use") == "access" else claims.get("aud")
        )
        if client != LOCAL_CLIENT_ID:
            raise RequestError(401, "UNAUTHENTICATED", "token was issued to another app client")
        groups = claims.get("cognito:groups") or []
        return Viewer(sub=str(claims["sub"]), staff=STAFF_GROUP in groups)


def _public_key(path: Path) -> rsa.RSAPublicKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise TypeError(f"{path} does not hold an RSA key")
    return private.public_key()


async def _raw_json(conn: asyncpg.Connection) -> None:
    """json values arrive as the bytes PostgreSQL sent, never decoded."""
    await conn.set_type_codec(
        "json",
        schema="pg_catalog",
        encoder=lambda value: value,
        decoder=lambda value: value,
        format="binary",
    )


def _decode_id(type_name: str, value: Any, field: str) -> int:
    try:
        text = str(value)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        prefix, _, pk = raw.partition(":")
        number = int(pk)
    except (ValueError, UnicodeError, binascii.Error):
        number, prefix = 0, ""
    if prefix != type_name or not 0 < number < 2**63:
        raise RequestError(200, "BAD_USER_INPUT", f"{field} is not a valid {type_name} ID")
    return number


def _signed_in(uid: int | None, viewer: Viewer) -> None:
    if viewer.sub is not None and uid is None:
        # The API would create the user here; the benchmark's users all exist.
        raise RequestError(401, "UNAUTHENTICATED", "the floor does not create users")


Handler = Callable[[Floor, Viewer, dict[str, Any]], Awaitable[bytes]]


async def q1(floor: Floor, viewer: Viewer, variables: dict[str, Any]) -> bytes:
    first = variables.get("first", 20)
    if not isinstance(first, int) or not 1 <= first <= MAX_PAGE_SIZE:
        raise RequestError(200, "BAD_USER_INPUT", "first must be between 1 and 100")
    flt = variables.get("filter") or {}
    moments = []
    if flt.get("upcoming", True):
        moments.append(datetime.now(UTC))
    if flt.get("endsAfter") is not None:
        moments.append(datetime.fromisoformat(flt["endsAfter"]))
    ends_after = max(moments) if moments else None
    uid, payload = await floor.fetchrow(Q1_SQL, *viewer.params(), ends_after, first)
    _signed_in(uid, viewer)
    return bytes(payload)


async def q2(floor: Floor, viewer: Viewer, variables: dict[str, Any]) -> bytes:
    business_id = _decode_id("Business", variables.get("id"), "id")
    uid, payload = await floor.fetchrow(Q2_SQL, *viewer.params(), business_id, True)
    _signed_in(uid, viewer)
    if payload is None:
        raise RequestError(200, "NOT_FOUND", "no such business", {"business": None})
    return bytes(payload)


async def q3(floor: Floor, viewer: Viewer, variables: dict[str, Any]) -> bytes:
    if viewer.sub is None:
        return b'{"data":{"me":null}}'
    uid, payload = await floor.fetchrow(Q3_SQL, *viewer.params(), AVAILABLE_EVENTS_LIMIT)
    _signed_in(uid, viewer)
    return bytes(payload)


def _m1(sql: str) -> Handler:
    async def handle(floor: Floor, viewer: Viewer, variables: dict[str, Any]) -> bytes:
        if viewer.sub is None:
            raise RequestError(200, "UNAUTHENTICATED", "sign in to do this")
        event_id = _decode_id("Event", variables.get("e"), "eventId")
        business_id = _decode_id("Business", variables.get("b"), "businessId")
        outcome, payload = await floor.fetchrow(sql, *viewer.params(), event_id, business_id)
        if outcome != "OK":
            code, message = M1_ERRORS[outcome]
            raise RequestError(401 if outcome == "UNKNOWN_VIEWER" else 200, code, message)
        return bytes(payload)

    return handle


HANDLERS: dict[str, Handler] = {
    "Q1": q1,
    "Q2": q2,
    "Q3": q3,
    "M1Join": _m1(JOIN_SQL),
    "M1Leave": _m1(LEAVE_SQL),
}


def _error(status: int, code: str, message: str, data: dict[str, Any] | None = None) -> Response:
    errors = [{"message": message, "extensions": {"code": code}}]
    return JSONResponse({"data": data, "errors": errors}, status_code=status)


async def graphql(request: Request) -> Response:
    floor: Floor = request.app.state.floor
    try:
        payload = json.loads(await request.body())
        handler = HANDLERS.get(payload.get("operationName"))
        if handler is None:
            raise RequestError(400, "BAD_REQUEST", "the floor knows only the bench scenarios")
        viewer = floor.viewer(request.headers.get("authorization"))
        content = await handler(floor, viewer, payload.get("variables") or {})
    except RequestError as exc:
        return _error(exc.status, exc.code, exc.message, exc.data)
    except (ValueError, AttributeError, TypeError) as exc:
        return _error(400, "BAD_REQUEST", f"malformed request: {exc}")
    return Response(content, media_type=JSON_TYPE)


async def stats(request: Request) -> Response:
    return JSONResponse({"statements": request.app.state.floor.statements})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(database_url: str, data_dir: Path) -> Starlette:
    floor = Floor(database_url, data_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await floor.start()
        app.state.floor = floor
        try:
            yield
        finally:
            await floor.stop()

    routes = [
        Route("/graphql", graphql, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory bench.floor:app_from_environment`."""
    return create_app(
        os.environ["DATABASE_URL"], Path(os.environ.get("POPMAP_DATA_DIR", ".popmap"))
    )


def __getattr__(name: str) -> Any:
    # `uvicorn bench.floor:app` builds the app on first access, from the environment.
    if name == "app":
        return app_from_environment()
    raise AttributeError(name)
