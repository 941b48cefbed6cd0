"""The schema runs through Strawberry's own pipeline, so a SchemaExtension added to it runs
for every request: around a compiled answer (which resolves no field) and around one the
resolvers give (whose fields its `resolve` hook sees)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import httpx
import orjson
from graphql import GraphQLResolveInfo
from starlette.requests import Request
from strawberry.extensions import SchemaExtension

from popmap_gql.api.context import Context
from popmap_gql.api.schema import build_schema
from popmap_gql.api.types import LOADER_SETUP
from popmap_gql.config import Settings
from tests.helpers import make_business, make_category


class Recording(SchemaExtension):
    """What a tracing extension would see."""

    steps: ClassVar[list[str]] = []

    def on_operation(self) -> Iterator[None]:
        self.steps.append("operation")
        yield

    def on_execute(self) -> Iterator[None]:
        self.steps.append("execute")
        yield

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kw: Any,
    ) -> Any:
        self.steps.append(f"{info.parent_type.name}.{info.field_name}")
        return _next(root, info, *args, **kw)


def _anonymous_context(settings: Settings) -> Context:
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "path": "/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
        }
    )
    return Context(request=request, settings=settings, loader_setup=LOADER_SETUP)


async def test_an_extension_runs_around_compiled_and_resolved_answers(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    bakery = await make_category("Bakery")
    await make_business("Crumbs", categories=[bakery])
    schema = build_schema(settings, extensions=[Recording])
    Recording.steps.clear()

    compiled = await schema.execute(
        "{ categories { name } }", context_value=_anonymous_context(settings)
    )

    assert compiled.errors is None
    assert orjson.loads(orjson.dumps(compiled.data)) == {"categories": [{"name": "Bakery"}]}
    assert Recording.steps == ["operation", "execute"]  # answered in SQL: no field resolved

    Recording.steps.clear()
    resolved = await schema.execute(
        "{ businesses { edges { node { name availableEvents { id } } } } }",
        context_value=_anonymous_context(settings),
    )

    assert resolved.errors is not None
    assert [(error.extensions or {})["code"] for error in resolved.errors] == ["UNAUTHENTICATED"]
    assert Recording.steps[:2] == ["operation", "execute"]
    assert {"Query.businesses", "Business.name", "Business.availableEvents"} <= set(Recording.steps)
