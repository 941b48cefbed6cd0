"""Migrations 0004 and 0006 on a database that already has businesses, events and uploads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from popmap_gql.db.orm import connection_credentials
from tests.conftest import drop_database, fresh_database
from tests.processes import ROOT, clean_env


async def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


async def migrated_to(server_url: str, tmp_path: Path, migration: str) -> str:
    """A new database with the migrations up to `migration` applied, by Tortoise's tool."""
    url = await fresh_database(server_url)
    config = {
        "connections": {"default": url},
        "apps": {"models": {"models": ["popmap_gql.db.models"], "migrations": "migrations"}},
        "use_tz": True,
        "timezone": "UTC",
    }
    config_file = tmp_path / "tortoise.json"
    config_file.write_text(json.dumps(config))
    tortoise = Path(sys.executable).parent / "tortoise"
    done = await run(
        [
            str(tortoise),
            "--config-file",
            str(config_file),
            "migrate",
            "models",
            migration,
        ],
        clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return url


@pytest.fixture
async def database_at_0003(server_url: str, tmp_path: Path) -> AsyncIterator[str]:
    url = await migrated_to(server_url, tmp_path, "0003_data_version")
    yield url
    await drop_database(server_url, url)


@pytest.fixture
async def database_at_0005(server_url: str, tmp_path: Path) -> AsyncIterator[str]:
    url = await migrated_to(server_url, tmp_path, "0005_service_clients")
    yield url
    await drop_database(server_url, url)


async def test_migration_0004_keeps_existing_businesses_and_events(
    database_at_0003: str,
) -> None:
    conn = await asyncpg.connect(**connection_credentials(database_at_0003))
    try:
        await conn.execute(
            "INSERT INTO business (name, description, contact_email, contact_phone, website,"
            " instagram_url, tiktok_url, available_for_hire, logo_url, is_verified, created_at,"
            " updated_at) VALUES ('Crumbs', '', '', '', '', '', '', false,"
            " 'https://cdn.example/crumbs.png', true, now(), now())"
        )
        await conn.execute(
            "INSERT INTO event (title, description, location_name, address, latitude, longitude,"
            " starts_at, ends_at, image_url, status, created_at, updated_at) VALUES ('Market',"
            " '', '', '', 30.2, -97.7, now(), now() + interval '1 hour', '', 'APPROVED', now(),"
            " now())"
        )
        result = await run(
            [sys.executable, "-m", "popmap_gql", "migrate"],
            clean_env(DATABASE_URL=database_at_0003),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        business = await conn.fetchrow("SELECT logo_url, logo_key FROM business")
        event = await conn.fetchrow("SELECT image_key FROM event")
    finally:
        await conn.close()
    assert dict(business or {}) == {"logo_url": "https://cdn.example/crumbs.png", "logo_key": ""}
    assert dict(event or {}) == {"image_key": ""}


UPLOAD_ROW = (
    "INSERT INTO media_upload (key, user_id, {owner}kind, content_type, byte_size, created_at,"
    " expires_at) VALUES ($1, $2, {value}'EVENT_IMAGE', 'image/png', 10, now(), now())"
)


async def test_migration_0006_keeps_peoples_uploads_and_gives_each_upload_exactly_one_owner(
    database_at_0005: str,
) -> None:
    conn = await asyncpg.connect(**connection_credentials(database_at_0005))
    try:
        user = await conn.fetchval(
            "INSERT INTO popmap_user (username, email, first_name, last_name, identity_provider,"
            " created_at, updated_at) VALUES ('ana', '', '', '', 'Cognito', now(), now())"
            " RETURNING id"
        )
        await conn.execute(UPLOAD_ROW.format(owner="", value=""), "uploads/1/a.png", user)
        result = await run(
            [sys.executable, "-m", "popmap_gql", "migrate"],
            clean_env(DATABASE_URL=database_at_0005),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        kept = await conn.fetchrow("SELECT key, user_id, client_id FROM media_upload")
        with_both = UPLOAD_ROW.format(owner="client_id, ", value="'svc', ")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(with_both, "uploads/1/b.png", user)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(UPLOAD_ROW.format(owner="", value=""), "uploads/1/c.png", None)
        await conn.execute(with_both, "uploads/c0/d.png", None)  # a service's: no user
    finally:
        await conn.close()
    assert dict(kept or {}) == {"key": "uploads/1/a.png", "user_id": user, "client_id": None}
