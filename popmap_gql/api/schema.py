"""Schema assembly: root types, limits and error handling; nothing else lives here."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    execute,
    specified_rules,
)
from strawberry.exceptions import MissingQueryError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from popmap_gql import observe, tracing
from popmap_gql.api.admission import Admission, admit
from popmap_gql.api.binding import bind
from popmap_gql.api.cost import CostModel
from popmap_gql.api.documents import Documents, Prepared
from popmap_gql.api.engine import (
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
    PopmapExecutionContext,
    get_first_operation,
    get_operation_type,
    graphql_schema,
    install_direct_resolvers,
    is_awaitable,
    plain_scalar_fields,
)
from popmap_gql.api.errors import log_unexpected
from popmap_gql.api.fast import FastReads
from popmap_gql.api.limits import ShapeLimits
from popmap_gql.api.mutations import Mutation
from popmap_gql.api.privacy import PrivateFields
from popmap_gql.api.queries import Query
from popmap_gql.api.subscriptions import Subscription
from popmap_gql.api.types import LOADER_SETUP, READ_MODEL, direct_resolvers
from popmap_gql.config import Settings
from popmap_gql.memory import DocumentMemory
from popmap_gql.read.loaders import LoaderSetup

__all__ = ["PopmapSchema", "build_schema", "schema"]

# Distinct documents whose parse and validation results are kept (LRU, per process),
# within their share of POPMAP_DOCUMENT_MEMORY_BYTES.
DOCUMENT_CACHE_SIZE = 256

_ALL_OPERATIONS = frozenset(OperationType)


class PopmapSchema(strawberry.Schema):
    """Strawberry's schema with a leaner `execute`.

    Strawberry's own runs every request through its extension pipeline (hooks, context
    managers, a middleware manager) although we use no per-request extension (and the
    schema refuses any, so that none is added believing it runs): the
    limits are validation rules, parse options and the cost check, and the documents are
    kept parsed and validated (`Documents`). This `execute` keeps Strawberry's contract —
    the same exceptions for a missing query, an unknown operation and an operation type
    the method does not allow, the same order of checks — and calls graphql-core
    directly.
    """

    documents: Documents
    cost_model: CostModel
    private_fields: PrivateFields
    max_query_cost: int
    hide_suggestions: bool
    fast: FastReads
    compiled_reads: bool
    loader_setup: LoaderSetup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `execute` bypasses Strawberry's extension pipeline, so a SchemaExtension (or an
        # operation directive, which Strawberry applies through one) would silently never
        # run: tracing or error masking added later would do nothing. Refused here instead.
        if self.extensions or self.directives:
            added = [getattr(e, "__name__", type(e).__name__) for e in self.extensions]
            added += [directive.python_name for directive in self.directives]
            msg = (
                f"PopmapSchema does not run schema extensions or operation directives "
                f"({', '.join(added)}): its execute() skips Strawberry's extension pipeline. "
                "Add the behaviour to PopmapSchema.execute or to the execution context "
                "(popmap_gql/api/engine.py) instead."
            )
            raise TypeError(msg)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected failures are answers, not incidents: only the unexpected are logged.
        log_unexpected(errors)

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
        if not query:
            raise MissingQueryError
        prepared = self.documents.prepare(query)
        document = prepared.document
        if document is None:  # a syntax error
            return ExecutionResult(data=None, errors=list(prepared.errors))
        if operation_name is None:
            first = get_first_operation(document)
            operation_name = first.name.value if first is not None and first.name else None
        try:
            operation_type = get_operation_type(document, operation_name)
        except RuntimeError as error:
            raise CannotGetOperationTypeError(operation_name) from error
        if operation_type not in (allowed_operation_types or _ALL_OPERATIONS):
            raise InvalidOperationTypeError(operation_type)
        tracing.name_request(operation_type.value, operation_name)
        if prepared.errors:
            return ExecutionResult(data=None, errors=list(prepared.errors))
        admission = self.admit(prepared, operation_name, variable_values)
        if admission.errors:
            return ExecutionResult(data=None, errors=list(admission.errors))
        observe.note_executed()
        with tracing.span("graphql.execute"):
            return await self._execute(
                document,
                admission,
                variable_values,
                context_value,
                root_value,
                operation_extensions,
            )

    async def _execute(
        self,
        document: DocumentNode,
        admission: Admission,
        variable_values: dict[str, Any] | None,
        context_value: Any | None,
        root_value: Any | None,
        operation_extensions: dict[str, Any] | None,
    ) -> ExecutionResult:
        try:
            operation = admission.operation
            if self.compiled_reads and operation is not None and context_value is not None:
                data = await self.fast.answer(document, operation, admission, context_value)
                if data is not None:
                    return ExecutionResult(data=data, errors=None)
            outcome = execute(
                graphql_schema(self),
                document,
                root_value=root_value,
                context_value=context_value,
                variable_values=variable_values,
                operation_name=admission.operation_name,
                executor_class=self.execution_context_class,
                is_awaitable=is_awaitable,
                operation_extensions=operation_extensions,
                hide_suggestions=self.hide_suggestions,
            )
            result = await outcome if isinstance(outcome, Awaitable) else outcome
        except Exception as exc:  # reported as an error of the operation, never raised
            failure = (
                exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            )
            self.process_errors([failure])
            return ExecutionResult(data=None, errors=[failure])
        if result.errors:
            self.process_errors(result.errors)
        return ExecutionResult(data=result.data, errors=result.errors)

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
            self.max_query_cost,
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


def build_schema(settings: Settings) -> PopmapSchema:
    built = PopmapSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
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
    built.cost_model = CostModel(core)  # fails on a list without a declared size
    built.private_fields = PrivateFields(core)  # fails on an unmarked private field
    built.max_query_cost = settings.max_query_cost
    built.hide_suggestions = not settings.introspection
    bound = bind(core, READ_MODEL)  # fails when the schema and the read model disagree
    built.fast = FastReads(built, core, bound, plans_max_bytes=memory.plans)
    built.compiled_reads = settings.compiled_reads
    built.loader_setup = LOADER_SETUP
    graphql_names = {(t, b.python_name): f for (t, f), b in bound.binding.items()}
    install_direct_resolvers(
        core,
        {
            (type_name, graphql_names[(type_name, field)]): resolve
            for (type_name, field), resolve in direct_resolvers().items()
        },
    )
    built.execution_context_class = type(
        "PopmapSchemaExecutionContext",
        (PopmapExecutionContext,),
        {"plain_fields": plain_scalar_fields(core)},
    )
    return built


# The schema with default settings, for `strawberry export-schema` and the drift check.
schema = build_schema(Settings())
