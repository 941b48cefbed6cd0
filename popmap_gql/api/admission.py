"""Admission: a prepared document's operation, its variables as execution sees them, and
its cost, decided once per request before anything runs.

Everything the server remembers about a request (its cost, its compiled plan, its cached
answer) is keyed on what that decision was made from. The variables enter those keys in
their *coerced* form, the one resolvers receive, never as the client wrote them: `100`,
`100.0` and `1e2` are the same `Int`, `5` and `"5"` the same `ID`, an omitted variable
with a default the same as the default written out, and an input object the same whatever
order its fields came in. Two requests therefore share a remembered decision exactly when
execution would see the same values, and a value written oddly can neither slip past a
limit decided for another value nor poison the decision for everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import (
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableValues,
    get_operation_ast,
    get_variable_values,
)

from popmap_gql.api.cost import Cost, CostModel, too_costly
from popmap_gql.api.documents import Prepared

__all__ = ["Admission", "admit", "canonical_variables"]


@dataclass(frozen=True, slots=True)
class Admission:
    """What a request was admitted (or refused) with.

    `operation` is None when the document has no operation of the requested name: that
    is execution's to report. `errors` holds the refusal (invalid variables, too costly);
    `values` the coerced values in graphql-core's form (with where each came from), which
    its directive and argument helpers take, and `key` their canonical form, which every
    memo of a decision about this request uses.
    """

    operation: OperationDefinitionNode | None
    operation_name: str | None
    values: VariableValues
    key: bytes
    cost: int = 0
    errors: tuple[GraphQLError, ...] = ()


_NONE = VariableValues({}, {})


def _canonical(value: datetime) -> str:
    """What orjson cannot write itself: an instant, the one value of the schema's scalars
    (DateTime) that is no JSON value, and one input objects or enums never hold (they
    coerce to dicts and strings). An aware instant enters a key in UTC: every offset of
    the same moment is one value to the resolvers (db/validation.py turns instants into
    UTC); a naive one, or one UTC cannot hold, as written (validation refuses both)."""
    if value.tzinfo is not None:
        try:
            return value.astimezone(UTC).isoformat()
        except OverflowError:
            pass
    return value.isoformat()


def canonical_variables(coerced: dict[str, Any]) -> bytes:
    """The coerced values as one byte string: equal exactly when the values are."""
    return orjson.dumps(
        coerced,
        default=_canonical,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
    )


def admit(
    schema: GraphQLSchema,
    cost_model: CostModel,
    limit: Cost,
    prepared: Prepared,
    operation_name: str | None,
    variable_values: dict[str, Any] | None,
) -> Admission:
    """The admission of a valid document's operation with these variable values."""
    assert prepared.document is not None
    assert not prepared.errors
    operation = get_operation_ast(prepared.document, operation_name)
    if operation is None:
        return Admission(None, operation_name, _NONE, b"{}")
    name = operation.name.value if operation.name else None
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), variable_values or {}
    )
    if isinstance(coerced, list):  # the same errors execution would report
        return Admission(operation, name, _NONE, b"{}", errors=tuple(coerced))
    key = canonical_variables(coerced.coerced)
    memo = (name, key)
    cost = prepared.costs.get(memo)
    if cost is None:
        root = schema.get_root_type(operation.operation)
        assert root is not None  # validated
        cost = cost_model.cost(prepared.fragments, operation, root.name, coerced.coerced)
        prepared.costs.put(memo, cost)
    refused = too_costly(cost, limit, operation)
    return Admission(
        operation, name, coerced, key, cost.objects, () if refused is None else (refused,)
    )
