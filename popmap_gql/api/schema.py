"""Schema assembly: root types, limits and error handling; nothing else lives here."""

from __future__ import annotations

from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from popmap_gql.api.errors import log_unexpected
from popmap_gql.api.mutations import Mutation
from popmap_gql.api.queries import Query
from popmap_gql.config import Settings

__all__ = ["PopmapSchema", "build_schema", "schema"]


class PopmapSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected failures are answers, not incidents: only the unexpected are logged.
        log_unexpected(errors)


def build_schema(settings: Settings) -> PopmapSchema:
    # Factories, not instances: Strawberry builds each extension anew per operation.
    return PopmapSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
            partial(QueryDepthLimiter, max_depth=settings.max_query_depth),
            partial(MaxAliasesLimiter, max_alias_count=settings.max_aliases),
        ],
        config=StrawberryConfig(auto_camel_case=True),
    )


# The schema with default settings, for `strawberry export-schema` and the drift check.
schema = build_schema(Settings())
