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

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
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
    `variables` the coerced values and `key` their canonical form, which every memo of a
    decision about this request uses; `values` is graphql-core's form of them (with where
    each came from), which its directive and argument helpers take.
    """

    operation: OperationDefinitionNode | None
    operation_name: str | None
    values: VariableValues
    key: bytes
    cost: int = 0
    errors: tuple[GraphQLError, ...] = ()

    @property
    def variables(self) -> dict[str, Any]:
        """The coerced values by variable name."""
        return self.values.coerced


_NONE = VariableValues({}, {})


_UNIQUE = itertools.count()  # never reused, unlike id()


def _canonical(value: Any) -> Any:
    """What orjson cannot write itself. An aware instant enters a key in UTC: every offset
    of the same moment is one value to the resolvers (db/validation.py turns instants into
    UTC); a naive one, or one UTC cannot hold, as written (validation refuses both). Any
    other object is a key of its own, shared with no other request."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            return value.astimezone(UTC).isoformat()
        except OverflowError:
            return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return f"<object {next(_UNIQUE)}>"


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
