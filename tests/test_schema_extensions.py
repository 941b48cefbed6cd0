"""PopmapSchema.execute skips Strawberry's extension pipeline, so the schema refuses what
only that pipeline would run (a SchemaExtension, an operation directive) when it is
built, rather than serving requests that silently skip them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import strawberry
from graphql import DirectiveLocation
from strawberry.extensions import SchemaExtension

from popmap_gql.api.mutations import Mutation
from popmap_gql.api.queries import Query
from popmap_gql.api.schema import PopmapSchema


class CountingExtension(SchemaExtension):
    """Counts operations: what a tracing extension would do (on main: 0 calls, unnoticed)."""

    calls = 0

    def on_operation(self) -> Iterator[None]:
        CountingExtension.calls += 1
        yield


@strawberry.directive(locations=[DirectiveLocation.FIELD], description="Upper-case a string.")
def shout(value: str) -> str:
    return value.upper()


def test_a_schema_extension_is_refused_when_the_schema_is_built() -> None:
    with pytest.raises(TypeError, match=r"does not run schema extensions.*CountingExtension"):
        PopmapSchema(query=Query, mutation=Mutation, extensions=[CountingExtension])


def test_an_extension_factory_is_refused_too() -> None:
    with pytest.raises(TypeError, match="does not run schema extensions"):
        PopmapSchema(query=Query, extensions=[lambda: CountingExtension(execution_context=None)])


def test_an_operation_directive_is_refused_when_the_schema_is_built() -> None:
    with pytest.raises(TypeError, match="shout"):
        PopmapSchema(query=Query, mutation=Mutation, directives=[shout])
