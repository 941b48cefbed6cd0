"""Helpers for tests: posting GraphQL over HTTP and creating rows."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Category, Event, EventStatus, Participation, User

NOW = datetime.now(UTC).replace(microsecond=0)


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    """POST a GraphQL request and return the decoded body, checking the HTTP status."""
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


async def make_category(name: str, slug: str | None = None) -> Category:
    return await Category.create(name=name, slug=slug or name.lower().replace(" ", "-"))


async def make_user(username: str = "someone") -> User:
    return await User.create(username=username, email=f"{username}@example.com")


async def make_business(
    name: str,
    *,
    verified: bool = True,
    categories: list[Category] | None = None,
    owner: User | None = None,
    **fields: Any,
) -> Business:
    business = await Business.create(name=name, is_verified=verified, owner=owner, **fields)
    if categories:
        await business.categories.add(*categories)
    return business


async def make_event(
    title: str,
    *,
    starts_in: timedelta = timedelta(days=1),
    hours: int = 3,
    status: EventStatus = EventStatus.APPROVED,
    latitude: float = 30.27,
    longitude: float = -97.74,
    businesses: list[Business] | None = None,
    **fields: Any,
) -> Event:
    starts_at = NOW + starts_in
    event = await Event.create(
        title=title,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=hours),
        status=status,
        latitude=latitude,
        longitude=longitude,
        **fields,
    )
    for business in businesses or []:
        await Participation.create(event=event, business=business)
    return event


def matrix_cells(matrix: dict[str, tuple[Any, ...]], viewers: tuple[str, ...]) -> list[Any]:
    """pytest params (row, viewer, expected) for a table of rows by viewers, one per cell."""
    return [
        pytest.param(row, viewer, matrix[row][index], id=f"{row}-{viewer}")
        for row in matrix
        for index, viewer in enumerate(viewers)
    ]
