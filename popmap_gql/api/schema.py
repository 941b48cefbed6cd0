"""Schema assembly: root types, limits and error handling; nothing else lives here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeGuard, cast

import strawberry
from graphql import (
    ASTValidationRule,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    execute,
    get_operation_ast,
    specified_rules,
)
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable as _is_awaitable
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_first_operation, get_operation_type

from popmap_gql.api.cost import CostModel, too_costly
from popmap_gql.api.documents import COSTS_KEPT, Documents, Prepared
from popmap_gql.api.errors import log_unexpected
from popmap_gql.api.execution import PopmapExecutionContext, plain_scalar_fields
from popmap_gql.api.limits import ShapeLimits
from popmap_gql.api.mutations import Mutation
from popmap_gql.api.privacy import PrivateFields
from popmap_gql.api.queries import Query
from popmap_gql.api.types import DIRECT_RESOLVERS
from popmap_gql.config import Settings

__all__ = ["PopmapSchema", "build_schema", "schema"]

# Distinct documents whose parse and validation results are kept (LRU, per process);
# with the body limit this bounds what unique documents can make the cache hold.
DOCUMENT_CACHE_SIZE = 256

_ALL_OPERATIONS = frozenset(OperationType)


class PopmapSchema(strawberry.Schema):
    """Strawberry's schema with a leaner `execute`.

    Strawberry's own runs every request through its extension pipeline (hooks, context
    managers, a middleware manager) although we use no per-request extension: the
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
        if prepared.errors:
            return ExecutionResult(data=None, errors=list(prepared.errors))
        refusal = self.cost_refusal(prepared, operation_name, variable_values)
        if refusal is not None:
            return ExecutionResult(data=None, errors=[refusal])
        try:
            outcome = execute(
                self._schema,
                document,
                root_value=root_value,
                context_value=context_value,
                variable_values=variable_values,
                operation_name=operation_name,
                executor_class=self.execution_context_class,
                is_awaitable=cast("Callable[[Any], TypeGuard[Awaitable[Any]]]", _is_awaitable),
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

    def admits(
        self, query: str, operation_name: str | None, variable_values: dict[str, Any] | None
    ) -> bool:
        """Whether the request is valid and within the cost limit (without executing it);
        a caller consulting anything that costs I/O first, such as the response cache,
        asks this so that a refused request causes none."""
        prepared = self.documents.prepare(query)
        return (
            prepared.document is not None
            and not prepared.errors
            and self.cost_refusal(prepared, operation_name, variable_values) is None
        )

    def cost_refusal(
        self,
        prepared: Prepared,
        operation_name: str | None,
        variable_values: dict[str, Any] | None,
    ) -> GraphQLError | None:
        """QUERY_TOO_COSTLY for a valid document's operation over the limit, else None
        (also when there is no such operation: execution reports that)."""
        assert prepared.document is not None
        operation = get_operation_ast(prepared.document, operation_name)
        if operation is None:
            return None
        # Only integer (or null) variables can set a page size: they key the memo.
        paging = tuple(
            sorted(
                (name, value)
                for name, value in (variable_values or {}).items()
                if value is None or isinstance(value, int)
            )
        )
        key = (operation_name, paging)
        cost = prepared.costs.get(key)
        if cost is None:
            root = self._schema.get_root_type(operation.operation)
            assert root is not None  # validated
            cost = self.cost_model.cost(prepared.fragments, operation, root.name, variable_values)
            if len(prepared.costs) >= COSTS_KEPT:
                prepared.costs.clear()
            prepared.costs[key] = cost
        return (
            too_costly(cost, self.max_query_cost, operation) if cost > self.max_query_cost else None
        )


def build_schema(settings: Settings) -> PopmapSchema:
    built = PopmapSchema(
        query=Query, mutation=Mutation, config=StrawberryConfig(auto_camel_case=True)
    )
    rules: list[type[ASTValidationRule]] = list(specified_rules)
    shape = ShapeLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        introspection=settings.introspection,
    )
    built.documents = Documents(
        built._schema,
        rules,
        shape=shape,
        max_tokens=settings.max_tokens,
        maxsize=DOCUMENT_CACHE_SIZE,
    )
    built.cost_model = CostModel(built._schema)  # fails on a list without a declared size
    built.private_fields = PrivateFields(built._schema)  # fails on an unmarked private field
    built.max_query_cost = settings.max_query_cost
    built.hide_suggestions = not settings.introspection
    _install_direct_resolvers(built)
    built.execution_context_class = type(
        "PopmapSchemaExecutionContext",
        (PopmapExecutionContext,),
        {"plain_fields": plain_scalar_fields(built._schema)},
    )
    return built


def _install_direct_resolvers(built: PopmapSchema) -> None:
    """Give the fields of DIRECT_RESOLVERS a graphql-core resolver calling their method
    with the context and the (already coerced) arguments; refused for a field with
    permissions or extensions, which only Strawberry's wrapper would apply."""
    for (type_name, field_name), method in DIRECT_RESOLVERS.items():
        graphql_type = built._schema.type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        graphql_field = graphql_type.fields[field_name]
        field = graphql_field.extensions["strawberry-definition"]
        if field.permission_classes or field.extensions:
            msg = f"{type_name}.{field_name} has permissions or extensions: no direct resolver"
            raise TypeError(msg)
        if {argument.python_name for argument in field.arguments} != set(graphql_field.args):
            msg = f"{type_name}.{field_name}: arguments must keep their Python names"
            raise TypeError(msg)
        graphql_field.resolve = _direct(method)


def _direct(method: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        return method(source, info.context, **arguments)

    return resolve


# The schema with default settings, for `strawberry export-schema` and the drift check.
schema = build_schema(Settings())
