"""The benchmark's data set: deterministic, loaded through the project's own migrations.

`generate()` builds every row in memory from a fixed seed; `prepare_database()` makes sure
the benchmark database holds exactly that data (creating, migrating and bulk-loading it
when it does not) and returns its URL. Run this file to (re)load the data and print the
rows the scenarios use:

    .venv/bin/python bench/dataset.py
    .venv/bin/python bench/dataset.py --scale 100   # the same data set x100, see `scaled`

`--scale N` (N > 1) builds the data set multiplied by N into a database of its own,
`popmap_bench_x{N}`, in SQL on the server (generate_series and a fixed hash of each row's
number, so the rows are the same on every build): see `scaled_statements`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg

from popmap_gql.auth.local_idp import LOCAL_ISSUER, local_sub
from popmap_gql.db.embedded import create_database, start_embedded, with_database
from popmap_gql.db.orm import connection_credentials

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / ".data"
PGDATA = DATA_DIR / "pgdata"
APP_DATA_DIR = DATA_DIR / "app"  # the real server's POPMAP_DATA_DIR (local IdP key)
POPMAP_GQL = ROOT / ".venv" / "bin" / "popmap-gql"

DATABASE = "popmap_bench"
# The database's comment, set once the load has finished, is this prefix and a digest of
# the rows: a database holding another version of the data set is rebuilt.
MARKER_PREFIX = "popmap-bench dataset"

SEED = 20260601
PIN = datetime(2026, 6, 1, tzinfo=UTC)
# Events that end after this stay "upcoming" (real now) for a while yet: the scenarios
# pick their lookup business and the event to join among them.
FUTURE = datetime(2027, 1, 1, tzinfo=UTC)
# The event joined and left in M1 starts after this, well after the first 100 upcoming
# events, so the owner dashboard (Q3) does not depend on M1's join/leave state.
JOIN_EVENT_AFTER = datetime(2027, 4, 1, tzinfo=UTC)

N_USERS = 2_000
N_BUSINESSES = 5_000
N_EVENTS = 1_000
N_PARTICIPATIONS = 20_000

# Mixed case on purpose ("BBQ" / "Bakery"): sorting by code point and by a linguistic
# collation disagree on them.
CATEGORY_NAMES = (
    "Art & Prints",
    "Bakery",
    "BBQ",
    "Books",
    "Candles",
    "Ceramics",
    "Coffee",
    "Flowers",
    "Food Truck",
    "Ice Cream",
    "Jewelry",
    "Leather Goods",
    "Live Music",
    "Plants",
    "Skincare",
    "Tacos",
    "Tea",
    "Textiles",
    "Vintage",
    "Woodwork",
)
ADJECTIVES = (
    "Blue", "Golden", "Little", "Lone Star", "Barton", "Cedar", "Red River", "Urban", "Happy",
    "Wild", "Sunny", "South Congress", "East Side", "Old Town", "Bluebonnet", "Copper",
    "Electric", "Velvet", "Humble", "Prairie", "Zilker", "Pecan", "Mesquite", "Lucky",
)  # fmt: skip
NOUNS = (
    "Goat", "Armadillo", "Grackle", "Oak", "Spoon", "Lantern", "Anchor", "Workshop",
    "Market", "Kitchen", "Studio", "Supply", "Collective", "Corner", "Garden", "Wagon",
    "Parlor", "House", "Cart", "Co.", "Trading Post", "Atelier", "Press", "Mill",
)  # fmt: skip
EVENT_KINDS = (
    "Night Market", "Makers Fair", "Pop-up", "Food Truck Rally", "Flea", "Art Walk",
    "Holiday Bazaar", "Farmers Market", "Block Party", "Vintage Swap",
)  # fmt: skip
PLACES = (
    "Zilker Park", "Mueller Lake", "East 6th", "South Lamar", "The Domain", "Rainey Street",
    "Republic Square", "Pease Park", "Springdale", "Hyde Park", "Barton Springs", "Govalle",
)  # fmt: skip
FIRST_NAMES = ("Ana", "Ben", "Chloe", "Diego", "Emma", "Femi", "Grace", "Hiro", "Ivy", "Jon")
LAST_NAMES = ("Alvarez", "Brown", "Chen", "Davis", "Evans", "Garcia", "Kim", "Lopez", "Nguyen")
OTHER_STATUSES = ("PENDING", "REJECTED", "CANCELLED")


@dataclass
class Dataset:
    """Every row of the data set, as tuples in the column order of `COLUMNS`."""

    category: list[tuple[Any, ...]] = field(default_factory=list)
    popmap_user: list[tuple[Any, ...]] = field(default_factory=list)
    cognito_identity: list[tuple[Any, ...]] = field(default_factory=list)
    business: list[tuple[Any, ...]] = field(default_factory=list)
    business_category: list[tuple[Any, ...]] = field(default_factory=list)
    event: list[tuple[Any, ...]] = field(default_factory=list)
    participation: list[tuple[Any, ...]] = field(default_factory=list)
    picks: Picks | None = None


@dataclass(frozen=True)
class Picks:
    """The rows the scenarios use, chosen deterministically from the generated data."""

    lookup_business_id: int  # Q2: verified, takes part in several events ending after FUTURE
    owner_user_id: int  # Q3 and M1: owns 2-3 businesses, at least one verified
    owner_email: str
    join_business_id: int  # M1: the owner's verified business
    join_event_id: int  # M1: approved, starts after JOIN_EVENT_AFTER, not joined in the data


# Load order (parents first) and the columns each table is loaded with.
COLUMNS: dict[str, tuple[str, ...]] = {
    "category": ("id", "name", "slug"),
    "popmap_user": (
        "id", "username", "email", "first_name", "last_name", "identity_provider",
        "created_at", "updated_at",
    ),
    "cognito_identity": ("id", "user_id", "issuer", "sub", "profile_complete", "created_at"),
    "business": (
        "id", "name", "description", "contact_email", "contact_phone", "website",
        "instagram_url", "tiktok_url", "available_for_hire", "logo_url", "owner_id",
        "is_verified", "created_at", "updated_at",
    ),
    "business_category": ("business_id", "category_id"),
    "event": (
        "id", "title", "description", "location_name", "address", "latitude", "longitude",
        "starts_at", "ends_at", "image_url", "status", "host_business_id", "created_by_id",
        "created_at", "updated_at",
    ),
    "participation": ("id", "event_id", "business_id", "joined_at"),
}  # fmt: skip


def user_email(user_id: int) -> str:
    return f"user{user_id}@bench.example"


def _slug(name: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())


def _maybe(rng: random.Random, probability: float, value: str) -> str:
    """`value` with the given probability, else "" (empty optional text)."""
    return value if rng.random() < probability else ""


def _users(ds: Dataset, rng: random.Random) -> None:
    base = PIN - timedelta(days=500)
    for user_id in range(1, N_USERS + 1):
        email = user_email(user_id)
        created = base + timedelta(minutes=7 * user_id)
        sub = local_sub(email)
        ds.popmap_user.append(
            (
                user_id,
                sub,  # what the real server stores as username for an access token
                email,
                rng.choice(FIRST_NAMES),
                rng.choice(LAST_NAMES),
                "Cognito",
                created,
                created,
            )
        )
        ds.cognito_identity.append((user_id, user_id, LOCAL_ISSUER, sub, True, created))


def _businesses(ds: Dataset, rng: random.Random) -> None:
    base = PIN - timedelta(days=450)
    for business_id in range(1, N_BUSINESSES + 1):
        # Every user owns one business; the rest go to random users, so some own several.
        owner = business_id if business_id <= N_USERS else rng.randint(1, N_USERS)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        if rng.random() < 0.3:
            name += f" {rng.randint(2, 99)}"
        slug = _slug(name)
        created = base + timedelta(seconds=3_599 * business_id)
        updated = created + timedelta(days=rng.randint(0, 60))
        since = 2010 + business_id % 15
        ds.business.append(
            (
                business_id,
                name,
                _maybe(rng, 0.8, f"{name}: small-batch goods, made in Austin since {since}."),
                _maybe(rng, 0.6, f"hello@{slug}.example"),
                _maybe(rng, 0.5, f"+1512555{business_id % 10_000:04d}"),
                _maybe(rng, 0.5, f"https://{slug}.example"),
                _maybe(rng, 0.4, f"https://instagram.com/{slug.replace('-', '')}"),
                _maybe(rng, 0.2, f"https://tiktok.com/@{slug.replace('-', '')}"),
                rng.random() < 0.3,
                _maybe(rng, 0.3, f"https://cdn.example/logos/{business_id}.png"),
                owner,
                rng.random() < 0.9,
                created,
                updated,
            )
        )  # fmt: skip
        for category_id in sorted(rng.sample(range(1, len(CATEGORY_NAMES) + 1), rng.randint(1, 3))):
            ds.business_category.append((business_id, category_id))


def _events(ds: Dataset, rng: random.Random) -> None:
    first_start = PIN - timedelta(days=365)
    span_seconds = 730 * 86_400
    owners = {row[0]: row[10] for row in ds.business}
    for event_id in range(1, N_EVENTS + 1):
        starts = first_start + timedelta(seconds=rng.randrange(span_seconds))
        ends = starts + timedelta(hours=rng.randint(2, 6))
        status = "APPROVED" if rng.random() < 0.8 else rng.choice(OTHER_STATUSES)
        host = rng.randint(1, N_BUSINESSES) if rng.random() < 0.3 else None
        if host is not None:
            created_by = owners[host]
        elif rng.random() < 0.7:
            created_by = rng.randint(1, N_USERS)
        else:
            created_by = None
        place = rng.choice(PLACES)
        created = starts - timedelta(days=rng.randint(10, 90))
        ds.event.append(
            (
                event_id,
                f"{place} {rng.choice(EVENT_KINDS)} #{event_id}",
                _maybe(rng, 0.7, f"Local makers, food and music at {place}."),
                _maybe(rng, 0.8, place),
                _maybe(rng, 0.6, f"{rng.randint(100, 9999)} {place} Blvd, Austin, TX"),
                round(rng.uniform(30.1, 30.5), 6),
                round(rng.uniform(-97.95, -97.55), 6),
                starts,
                ends,
                _maybe(rng, 0.3, f"https://cdn.example/events/{event_id}.jpg"),
                status,
                host,
                created_by,
                created,
                created + timedelta(days=rng.randint(0, 5)),
            )
        )


def _owner_and_join_pair(ds: Dataset) -> tuple[int, int, int]:
    """(owner user, one of their verified businesses, an event to join) for Q3 and M1."""
    owned: dict[int, list[tuple[int, bool]]] = {}
    for row in ds.business:
        owned.setdefault(row[10], []).append((row[0], row[11]))
    owner = min(
        user
        for user, businesses in owned.items()
        if len(businesses) == 3 and any(verified for _, verified in businesses)
    )
    join_business = min(bid for bid, verified in owned[owner] if verified)
    join_event = min(
        (row for row in ds.event if row[10] == "APPROVED" and row[7] >= JOIN_EVENT_AFTER),
        key=lambda row: (row[7], row[0]),
    )[0]
    return owner, join_business, join_event


def _participations(ds: Dataset, rng: random.Random, excluded: tuple[int, int]) -> None:
    starts = {row[0]: row[7] for row in ds.event}
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < N_PARTICIPATIONS:
        pair = (rng.randint(1, N_BUSINESSES), rng.randint(1, N_EVENTS))
        if pair == excluded or pair in pairs:
            continue
        pairs.add(pair)
        business_id, event_id = pair
        joined = starts[event_id] - timedelta(seconds=rng.randrange(1, 60 * 86_400))
        ds.participation.append((len(pairs), event_id, business_id, joined))


def _lookup_business(ds: Dataset) -> int:
    """The verified business taking part in the most approved events ending after FUTURE."""
    future = {row[0] for row in ds.event if row[10] == "APPROVED" and row[8] >= FUTURE}
    verified = {row[0] for row in ds.business if row[11]}
    counts = Counter(row[2] for row in ds.participation if row[1] in future and row[2] in verified)
    business_id, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    assert count >= 3, count
    return int(business_id)  # rows are tuples of Any


def marker(ds: Dataset) -> str:
    """What the database's comment says once it holds exactly `ds`."""
    digest = hashlib.sha256()
    for table in COLUMNS:
        digest.update(repr(getattr(ds, table)).encode())
    return f"{MARKER_PREFIX} {digest.hexdigest()[:16]}"


def generate() -> Dataset:
    """The whole data set; the same on every call."""
    rng = random.Random(SEED)
    ds = Dataset()
    for category_id, name in enumerate(CATEGORY_NAMES, start=1):
        ds.category.append((category_id, name, _slug(name)))
    _users(ds, rng)
    _businesses(ds, rng)
    _events(ds, rng)
    owner, join_business, join_event = _owner_and_join_pair(ds)
    _participations(ds, rng, excluded=(join_business, join_event))
    ds.picks = Picks(
        lookup_business_id=_lookup_business(ds),
        owner_user_id=owner,
        owner_email=user_email(owner),
        join_business_id=join_business,
        join_event_id=join_event,
    )
    return ds


# --- loading ----------------------------------------------------------------------------


def server_admin_url() -> str:
    """BENCH_DATABASE_URL, or the embedded PostgreSQL in bench/.data/pgdata (started here;
    it stops when the last process using it exits)."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    return start_embedded(PGDATA)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**connection_credentials(url))


async def _comment(admin_url: str, database: str) -> str | None:
    conn = await _connect(admin_url)
    try:
        marker: str | None = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            database,
        )
        return marker
    finally:
        await conn.close()


async def _is_loaded(admin_url: str, ds: Dataset, database: str) -> bool:
    if await _comment(admin_url, database) != marker(ds):
        return False
    conn = await _connect(with_database(admin_url, database))
    try:
        businesses = await conn.fetchval("SELECT count(*) FROM business")
        events = await conn.fetchval("SELECT count(*) FROM event")
    finally:
        await conn.close()
    return bool(businesses == len(ds.business) and events == len(ds.event))


async def _drop(admin_url: str, database: str) -> None:
    conn = await _connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


def _migrate(url: str) -> None:
    result = subprocess.run(
        [str(POPMAP_GQL), "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"popmap-gql migrate failed:\n{result.stdout}\n{result.stderr}")


async def _load(url: str, ds: Dataset, database: str) -> None:
    conn = await _connect(url)
    try:
        async with conn.transaction():
            for table, columns in COLUMNS.items():
                rows: list[tuple[Any, ...]] = getattr(ds, table)
                await conn.copy_records_to_table(table, records=rows, columns=list(columns))
                if "id" in columns:
                    # ids were given explicitly: move the sequence past them
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
        await conn.execute("ANALYZE")
        await conn.execute(f"COMMENT ON DATABASE \"{database}\" IS '{marker(ds)}'")
    finally:
        await conn.close()


async def prepare_database(
    admin_url: str, ds: Dataset, *, log: Any = print, database: str = DATABASE
) -> str:
    """The URL of the benchmark database (`database` on the server), built (fresh
    database, migrations, data) unless it already holds this data set; either way
    migrated to the latest migration."""
    url = with_database(admin_url, database)
    if await _is_loaded(admin_url, ds, database):
        # Migrations added since the load (new tables, indexes) still apply.
        await asyncio.to_thread(_migrate, url)
        log(f"dataset: reusing database {database} ({marker(ds)}), migrations applied")
        return url
    started = time.monotonic()
    log(f"dataset: building database {database} ...")
    await _drop(admin_url, database)
    await create_database(admin_url, database)
    await asyncio.to_thread(_migrate, url)
    await _load(url, ds, database)
    log(f"dataset: loaded in {time.monotonic() - started:.1f}s")
    return url


def summary(ds: Dataset) -> str:
    verified = sum(1 for row in ds.business if row[11])
    approved = sum(1 for row in ds.event if row[10] == "APPROVED")
    return (
        f"{len(ds.category)} categories, {len(ds.popmap_user)} users,"
        f" {len(ds.business)} businesses ({verified} verified), {len(ds.event)} events"
        f" ({approved} approved), {len(ds.participation)} participations; picks {ds.picks}"
    )


# --- the data set multiplied by N, generated by the server -------------------------------


class Metro(NamedTuple):
    """A metro area holding `share` of a scaled data set's events, uniform over its box."""

    name: str
    south: float
    north: float
    west: float
    east: float
    share: float


# Austin is today's city (the 1x box) and keeps 12 % of the events, so an Austin viewport
# at 100x holds 12 times today's; the others are denser or sparser; what is left of the
# shares (20 %) is spread thinly over the continental United States.
METROS = (
    Metro("Austin", 30.1, 30.5, -97.95, -97.55, 0.12),
    Metro("New York", 40.55, 40.95, -74.25, -73.7, 0.16),
    Metro("Los Angeles", 33.7, 34.3, -118.65, -117.7, 0.12),
    Metro("Chicago", 41.65, 42.05, -87.95, -87.55, 0.09),
    Metro("Houston", 29.55, 30.05, -95.75, -95.05, 0.07),
    Metro("Seattle", 47.45, 47.75, -122.45, -122.2, 0.06),
    Metro("Denver", 39.6, 39.9, -105.1, -104.8, 0.05),
    Metro("Miami", 25.7, 25.95, -80.35, -80.1, 0.05),
    Metro("Portland", 45.4, 45.6, -122.8, -122.5, 0.04),
    Metro("Nashville", 36.05, 36.25, -86.9, -86.65, 0.04),
)
REST = Metro("rest", 25.0, 49.0, -124.0, -67.0, 1 - sum(m.share for m in METROS))

SCALED_MARKER = "popmap-bench scaled"


def scaled_database(scale: int) -> str:
    return DATABASE if scale == 1 else f"{DATABASE}_x{scale}"


def _sql_text(values: tuple[str, ...]) -> str:
    """A SQL array literal of our own constants (no quotes inside any of them)."""
    assert all("'" not in value for value in values)
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


def scaled_statements(scale: int) -> list[str]:
    """The statements filling a migrated, empty database with the data set x `scale`
    (users and their identities excepted: `_scaled_users`). Every random choice is
    `pg_temp.u(row number, salt)`, a fixed hash of the row's number in [0, 1)."""
    users, businesses = N_USERS * scale, N_BUSINESSES * scale
    events, participations = N_EVENTS * scale, N_PARTICIPATIONS * scale
    pin = PIN.isoformat()
    metro_cases: list[str] = []
    low = 0.0
    for metro in METROS:
        high = low + metro.share
        metro_cases.append(
            f"WHEN m < {high:.6f} THEN ARRAY[{metro.south}, {metro.north},"
            f" {metro.west}, {metro.east}]"
        )
        low = high
    rest = f"ARRAY[{REST.south}, {REST.north}, {REST.west}, {REST.east}]"
    return [
        # a fixed hash of (n, salt) in [0, 1): the same on every server and build
        "CREATE FUNCTION pg_temp.u(n bigint, salt int) RETURNS float8 LANGUAGE sql IMMUTABLE"
        " AS $$ SELECT ((hashint8extended(n, salt) % 1000000007) + 1000000007)"
        " % 1000000007 / 1000000007.0 $$",
        f"""INSERT INTO business (id, name, description, contact_email, contact_phone, website,
            instagram_url, tiktok_url, available_for_hire, logo_url, owner_id, is_verified,
            created_at, updated_at)
        SELECT id, name,
            CASE WHEN pg_temp.u(id, 3) < 0.8 THEN name || ': small-batch goods, made in Austin'
                || ' since ' || (2010 + id % 15) || '.' ELSE '' END,
            CASE WHEN pg_temp.u(id, 4) < 0.6 THEN 'hello@' || slug || '.example' ELSE '' END,
            CASE WHEN pg_temp.u(id, 5) < 0.5 THEN '+1512555' || lpad((id % 10000)::text, 4, '0')
                ELSE '' END,
            CASE WHEN pg_temp.u(id, 6) < 0.5 THEN 'https://' || slug || '.example' ELSE '' END,
            CASE WHEN pg_temp.u(id, 7) < 0.4
                THEN 'https://instagram.com/' || replace(slug, '-', '') ELSE '' END,
            CASE WHEN pg_temp.u(id, 8) < 0.2
                THEN 'https://tiktok.com/@' || replace(slug, '-', '') ELSE '' END,
            pg_temp.u(id, 9) < 0.3,
            CASE WHEN pg_temp.u(id, 10) < 0.3 THEN 'https://cdn.example/logos/' || id || '.png'
                ELSE '' END,
            CASE WHEN id <= {users} THEN id ELSE 1 + floor(pg_temp.u(id, 11) * {users})::bigint END,
            pg_temp.u(id, 12) < 0.9,
            created, created + floor(pg_temp.u(id, 13) * 61) * interval '1 day'
        FROM (
            SELECT id, name, lower(regexp_replace(trim(regexp_replace(name, '[^A-Za-z0-9]+', ' ',
                    'g')), ' ', '-', 'g')) AS slug,
                timestamptz '{pin}' - interval '450 days' + id * interval '{3599 / scale} seconds'
                    AS created
            FROM (
                SELECT id,
                    ({_sql_text(ADJECTIVES)})[1 + floor(pg_temp.u(id, 1) * {len(ADJECTIVES)})]
                    || ' ' || ({_sql_text(NOUNS)})[1 + floor(pg_temp.u(id, 2) * {len(NOUNS)})]
                    || CASE WHEN pg_temp.u(id, 14) < 0.3
                        THEN ' ' || (2 + floor(pg_temp.u(id, 15) * 98)) ELSE '' END AS name
                FROM generate_series(1, {businesses}) AS id
            ) named
        ) b""",
        f"""INSERT INTO business_category (business_id, category_id)
        SELECT DISTINCT b, 1 + floor(pg_temp.u(b * 4 + k, 16) * {len(CATEGORY_NAMES)})::bigint
        FROM generate_series(1, {businesses}) AS b, generate_series(1, 3) AS k
        WHERE k = 1 OR pg_temp.u(b * 4 + k, 17) < 0.5""",
        f"""INSERT INTO event (id, title, description, location_name, address, latitude,
            longitude, starts_at, ends_at, image_url, status, host_business_id, created_by_id,
            created_at, updated_at)
        SELECT e.id, place || ' ' || kind || ' #' || e.id,
            CASE WHEN pg_temp.u(e.id, 21) < 0.7
                THEN 'Local makers, food and music at ' || place || '.' ELSE '' END,
            CASE WHEN pg_temp.u(e.id, 22) < 0.8 THEN place ELSE '' END,
            CASE WHEN pg_temp.u(e.id, 23) < 0.6
                THEN (100 + floor(pg_temp.u(e.id, 24) * 9900)) || ' ' || place || ' Blvd'
                ELSE '' END,
            round((area[1] + pg_temp.u(e.id, 25) * (area[2] - area[1]))::numeric, 6),
            round((area[3] + pg_temp.u(e.id, 26) * (area[4] - area[3]))::numeric, 6),
            starts, starts + (2 + floor(pg_temp.u(e.id, 27) * 5)) * interval '1 hour',
            CASE WHEN pg_temp.u(e.id, 28) < 0.3
                THEN 'https://cdn.example/events/' || e.id || '.jpg' ELSE '' END,
            CASE WHEN pg_temp.u(e.id, 29) < 0.8 THEN 'APPROVED'
                ELSE ({_sql_text(OTHER_STATUSES)})[1 + floor(pg_temp.u(e.id, 30) * 3)] END,
            host, CASE WHEN host IS NOT NULL THEN hb.owner_id
                WHEN pg_temp.u(e.id, 31) < 0.7 THEN 1 + floor(pg_temp.u(e.id, 32) * {users})::bigint
                END,
            starts - (10 + floor(pg_temp.u(e.id, 33) * 81)) * interval '1 day',
            starts - (10 + floor(pg_temp.u(e.id, 33) * 81)) * interval '1 day'
                + floor(pg_temp.u(e.id, 34) * 6) * interval '1 day'
        FROM (
            SELECT id,
                ({_sql_text(PLACES)})[1 + floor(pg_temp.u(id, 35) * {len(PLACES)})] AS place,
                ({_sql_text(EVENT_KINDS)})[1 + floor(pg_temp.u(id, 36) * {len(EVENT_KINDS)})]
                    AS kind,
                timestamptz '{pin}' - interval '365 days'
                    + floor(pg_temp.u(id, 37) * {730 * 86_400}) * interval '1 second' AS starts,
                CASE WHEN pg_temp.u(id, 38) < 0.3
                    THEN 1 + floor(pg_temp.u(id, 39) * {businesses})::bigint END AS host,
                (SELECT CASE {" ".join(metro_cases)} ELSE {rest} END
                    FROM (SELECT pg_temp.u(id, 40) AS m) pick) AS area
            FROM generate_series(1, {events}) AS id
        ) e LEFT JOIN business hb ON hb.id = e.host""",
        # distinct (business, event) pairs; a repeated pair keeps its first draw
        f"""INSERT INTO participation (id, event_id, business_id, joined_at)
        SELECT row_number() OVER (ORDER BY first_draw), event_id, business_id,
            starts_at - (1 + floor(pg_temp.u(first_draw, 43) * {60 * 86_400 - 1}))
                * interval '1 second'
        FROM (
            SELECT min(i) AS first_draw, event_id, business_id FROM (
                SELECT i, 1 + floor(pg_temp.u(i, 41) * {events})::bigint AS event_id,
                    1 + floor(pg_temp.u(i, 42) * {businesses})::bigint AS business_id
                FROM generate_series(1, {participations}) AS i
            ) draws GROUP BY event_id, business_id
        ) pairs JOIN event e ON e.id = pairs.event_id""",
    ]


def _scaled_users(scale: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The users and their identities (the local `sub` is computed here, not in SQL)."""
    ds = Dataset()
    rng = random.Random(SEED)
    for user_id in range(1, N_USERS * scale + 1):
        email = user_email(user_id)
        created = PIN - timedelta(days=500) + timedelta(seconds=420 * user_id / scale)
        sub = local_sub(email)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        ds.popmap_user.append((user_id, sub, email, first, last, "Cognito", created, created))
        ds.cognito_identity.append((user_id, user_id, LOCAL_ISSUER, sub, True, created))
    return ds.popmap_user, ds.cognito_identity


def scaled_marker(scale: int) -> str:
    """The comment of a database holding the data set x `scale`: a digest of the
    statements and code that make it (the rows are a function of them)."""
    digest = hashlib.sha256(repr(scaled_statements(scale)).encode())
    digest.update(inspect.getsource(_scaled_users).encode())
    digest.update(repr(CATEGORY_NAMES).encode())
    digest.update(inspect.getsource(_scaled_picks).encode())
    return f"{SCALED_MARKER} x{scale} {digest.hexdigest()[:16]}"


async def _scaled_picks(conn: asyncpg.Connection) -> Picks:
    """The same picks as `generate()` makes, chosen by the same rules in SQL."""
    owner = await conn.fetchval(
        "SELECT owner_id FROM business GROUP BY owner_id"
        " HAVING count(*) = 3 AND bool_or(is_verified) ORDER BY owner_id LIMIT 1"
    )
    join_business = await conn.fetchval(
        "SELECT min(id) FROM business WHERE owner_id = $1 AND is_verified", owner
    )
    join_event = await conn.fetchval(
        "SELECT id FROM event WHERE status = 'APPROVED' AND starts_at >= $1"
        " ORDER BY starts_at, id LIMIT 1",
        JOIN_EVENT_AFTER,
    )
    lookup = await conn.fetchval(
        "SELECT p.business_id FROM participation p JOIN event e ON e.id = p.event_id"
        " JOIN business b ON b.id = p.business_id"
        " WHERE e.status = 'APPROVED' AND e.ends_at >= $1 AND b.is_verified"
        " GROUP BY p.business_id ORDER BY count(*) DESC, p.business_id LIMIT 1",
        FUTURE,
    )
    return Picks(
        lookup_business_id=lookup,
        owner_user_id=owner,
        owner_email=user_email(owner),
        join_business_id=join_business,
        join_event_id=join_event,
    )


async def _load_scaled(url: str, scale: int, database: str, log: Any) -> None:
    users, identities = _scaled_users(scale)
    conn = await _connect(url)
    try:
        async with conn.transaction():
            categories = [(i, name, _slug(name)) for i, name in enumerate(CATEGORY_NAMES, 1)]
            for table, rows in (
                ("category", categories),
                ("popmap_user", users),
                ("cognito_identity", identities),
            ):
                await conn.copy_records_to_table(table, records=rows, columns=list(COLUMNS[table]))
            for statement in scaled_statements(scale):
                started = time.monotonic()
                await conn.execute(statement)
                what = statement.split("(")[0].strip()[:40]
                log(f"dataset: {what} {time.monotonic() - started:.1f}s")
            picks = await _scaled_picks(conn)
            # the pair M1 joins is never joined in the data set
            await conn.execute(
                "DELETE FROM participation WHERE business_id = $1 AND event_id = $2",
                picks.join_business_id,
                picks.join_event_id,
            )
            for table, columns in COLUMNS.items():
                if "id" in columns:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute(f"COMMENT ON DATABASE \"{database}\" IS '{scaled_marker(scale)}'")
    finally:
        await conn.close()


async def prepare_scaled(admin_url: str, scale: int, *, log: Any = print) -> tuple[str, Picks]:
    """The URL of the database holding the data set x `scale` (built unless it already
    does, migrated either way) and the rows its scenarios use."""
    database = scaled_database(scale)
    url = with_database(admin_url, database)
    if await _comment(admin_url, database) == scaled_marker(scale):
        await asyncio.to_thread(_migrate, url)
        log(f"dataset: reusing database {database} ({scaled_marker(scale)}), migrations applied")
    else:
        started = time.monotonic()
        log(f"dataset: building database {database} ...")
        await _drop(admin_url, database)
        await create_database(admin_url, database)
        await asyncio.to_thread(_migrate, url)
        await _load_scaled(url, scale, database, log)
        log(f"dataset: built x{scale} in {time.monotonic() - started:.1f}s")
    conn = await _connect(url)
    try:
        picks = await _scaled_picks(conn)
    finally:
        await conn.close()
    return url, picks


async def scaled_summary(url: str) -> str:
    conn = await _connect(url)
    try:
        counts = [
            f"{await conn.fetchval(f'SELECT count(*) FROM {table}')} {table}" for table in COLUMNS
        ]
        austin = METROS[0]
        in_austin = await conn.fetchval(
            "SELECT count(*) FROM event WHERE latitude BETWEEN $1 AND $2"
            " AND longitude BETWEEN $3 AND $4",
            austin.south,
            austin.north,
            austin.west,
            austin.east,
        )
    finally:
        await conn.close()
    return f"{', '.join(counts)}; {in_austin} events in Austin"


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Build or check the benchmark's database.")
    parser.add_argument("--scale", type=int, default=1, help="the data set x N (default 1)")
    scale = parser.parse_args().scale
    if scale < 1:
        parser.error("--scale must be at least 1")
    admin = await asyncio.to_thread(server_admin_url)
    if scale == 1:
        ds = generate()
        url = await prepare_database(admin, ds)
        print(summary(ds))
    else:
        url, picks = await prepare_scaled(admin, scale)
        print(f"{await scaled_summary(url)}; picks {picks}")
    print(f"database: {url.rsplit('@', 1)[-1]}")


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
