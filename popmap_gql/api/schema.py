"""Schema assembly: root types, limits and error handling; nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, specified_rules
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from popmap_gql import observe, tracing
from popmap_gql.api import pipeline
from popmap_gql.api.admission import Admission, admit
from popmap_gql.api.binding import bind
from popmap_gql.api.compiled import CompiledReads
from popmap_gql.api.cost import Cost, CostModel
from popmap_gql.api.documents import Documents, Prepared
from popmap_gql.api.engine import graphql_schema
from popmap_gql.api.errors import log_unexpected
from popmap_gql.api.limits import ShapeLimits
from popmap_gql.api.mutations import Mutation
from popmap_gql.api.pipeline import Pipeline
from popmap_gql.api.privacy import PrivateFields
from popmap_gql.api.query import Query
from popmap_gql.api.sizes import ROWS_READ_PER_COUNTED
from popmap_gql.api.subscriptions import Subscription
from popmap_gql.api.types import LOADER_SETUP, READ_MODEL
from popmap_gql.config import Settings
from popmap_gql.memory import DocumentMemory
from popmap_gql.read.loaders import LoaderSetup

__all__ = ["PopmapSchema", "build_schema", "schema"]

# Distinct documents whose parse and validation results are kept (LRU, per process),
# within their share of POPMAP_DOCUMENT_MEMORY_BYTES.
DOCUMENT_CACHE_SIZE = 256


class PopmapSchema(strawberry.Schema):
    """Strawberry's schema, run by Strawberry's own pipeline with ours as its first
    extension (`api/pipeline.py`: the prepared documents, the admission, the compiled
    read path). Further extensions and operation directives run as Strawberry runs them;
    without any, a compiled answer skips the pipeline (see `execute`)."""

    documents: Documents
    cost_model: CostModel
    private_fields: PrivateFields
    cost_limit: Cost
    compiled: CompiledReads
    compiled_reads: bool
    loader_setup: LoaderSetup

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Strawberry's `execute`, but a valid query that the compiled path answers, on a
        schema with no extension besides ours, skips the pipeline's machinery (its
        per-request extension runner, context managers and middleware manager: about
        100 us of CPU per request, a fifth of the uncached Q2 rate). Everything else,
        errors included, goes through Strawberry's pipeline (api/pipeline.py)."""
        allowed = allowed_operation_types is None or OperationType.QUERY in allowed_operation_types
        if (
            allowed
            and len(self.extensions) == 1
            and not self.directives
            and query
            and context_value
        ):
            admitted = pipeline.admitted_query(self, query, operation_name, variable_values)
            if admitted is not None:
                document, admission = admitted
                tracing.name_request(OperationType.QUERY.value, admission.operation_name)
                observe.note_executed()
                try:
                    with tracing.span("graphql.execute"):
                        data = await pipeline.answer(self, document, admission, context_value)
                except Exception as exc:  # reported as Strawberry's pipeline reports it
                    error = GraphQLError(str(exc), original_error=exc)
                    self.process_errors([error])
                    return ExecutionResult(data=None, errors=[error])
                if data is not None:
                    return ExecutionResult(data=data, errors=None)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected failures are answers, not incidents: only the unexpected are logged.
        log_unexpected(errors)

    def admit(
        self,
        prepared: Prepared,
        operation_name: str | None,
        variable_values: dict[str, Any] | None,
    ) -> Admission:
        """The admission of a valid document's operation (see admission.py)."""
        return admit(
            graphql_schema(self),
            self.cost_model,
            self.cost_limit,
            prepared,
            operation_name,
            variable_values,
        )

    def admits(
        self, query: str, operation_name: str | None, variable_values: dict[str, Any] | None
    ) -> Admission | None:
        """The admission of a request that is valid and within the cost limit (without
        executing it), else None; a caller consulting anything that costs I/O first, such
        as the response cache, asks this so that a refused request causes none, and keys
        what it remembers on the admission's operation name and variables."""
        prepared = self.documents.prepare(query)
        if prepared.document is None or prepared.errors:
            return None
        admission = self.admit(prepared, operation_name, variable_values)
        return None if admission.errors or admission.operation is None else admission


def build_schema(
    settings: Settings, extensions: Sequence[type[SchemaExtension]] = ()
) -> PopmapSchema:
    """The schema; `extensions` run after ours (api/pipeline.py), as Strawberry runs them."""
    built = PopmapSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[Pipeline, *extensions],
    )
    core = graphql_schema(built)
    rules: list[type[ASTValidationRule]] = list(specified_rules)
    memory = DocumentMemory(settings.document_memory_bytes)
    shape = ShapeLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        introspection=settings.introspection,
    )
    built.documents = Documents(
        core,
        rules,
        shape=shape,
        max_tokens=settings.max_tokens,
        max_entries=DOCUMENT_CACHE_SIZE,
        max_bytes=memory.documents,
    )
    # fails on a list without a declared size; a count reads up to the cap + 1 rows
    count_cost = settings.max_exact_count + 1
    built.cost_model = CostModel(
        core, count_cost=count_cost, count_database_cost=count_cost * ROWS_READ_PER_COUNTED
    )
    built.private_fields = PrivateFields(core)  # fails on an unmarked private field
    built.cost_limit = Cost(settings.max_query_cost, settings.max_database_cost)
    bound = bind(core, READ_MODEL)  # fails when the schema and the read model disagree
    built.compiled = CompiledReads(built, core, bound, plans_max_bytes=memory.plans)
    built.compiled_reads = settings.compiled_reads
    built.loader_setup = LOADER_SETUP
    return built


# The schema with default settings, for `strawberry export-schema` and the drift check.
schema = build_schema(Settings())
