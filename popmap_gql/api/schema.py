"""Schema assembly: root types, limits and error handling; nothing else lives here."""

from __future__ import annotations

from functools import partial

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from popmap_gql.api.errors import log_unexpected
from popmap_gql.api.execution import PopmapExecutionContext, plain_scalar_fields
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


# Distinct documents whose parse and validation results are kept (LRU, per process);
# with the body limit this bounds what unique documents can make the caches hold.
DOCUMENT_CACHE_SIZE = 256


def build_schema(settings: Settings) -> PopmapSchema:
    # The limit rules are built once: QueryDepthLimiter and MaxAliasesLimiter would build
    # new rule classes per request, which defeats the validation cache (it keys on them).
    limit_rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None, None),
        aliases_rule(settings.max_aliases),
    ]
    # Factories, not instances: Strawberry builds each extension anew per operation.
    built = PopmapSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
            partial(AddValidationRules, limit_rules),
            partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
            partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
        ],
        config=StrawberryConfig(auto_camel_case=True),
    )
    built.execution_context_class = type(
        "PopmapSchemaExecutionContext",
        (PopmapExecutionContext,),
        {"plain_fields": plain_scalar_fields(built._schema)},
    )
    return built


# The schema with default settings, for `strawberry export-schema` and the drift check.
schema = build_schema(Settings())
