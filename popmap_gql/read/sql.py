"""SQL derived from the read model: relation loaders' statements and JSON-building
expressions for a selection. Statements are assembled from the model's fixed fragments
and GraphQL names (validated against the schema, so letters, digits and underscores
only); every client value travels as a parameter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from popmap_gql.read.model import Entity, Relation, SqlScope

__all__ = [
    "FALLBACK",
    "FALLBACK_MARK",
    "NotCompilable",
    "Selected",
    "group_rows",
    "object_json",
    "relation_json",
    "relation_rows_sql",
]

# What a compiled answer holds where only the resolver can answer (a guarded field the
# viewer may not read: the resolver raises the coded error). `$` cannot start a GraphQL
# name and a quote inside a JSON string is escaped, so the mark never occurs otherwise.
FALLBACK_MARK = '{"$popmap$fallback"'
FALLBACK = "json_build_object('$popmap$fallback', TRUE)"
# json_build_object takes at most 100 arguments: 50 fields per object.
MAX_FIELDS_PER_OBJECT = 50


@dataclass(slots=True)
class Selected:
    """One field of a selection, merged across fragments: its response key, its Python
    name on the type (None for __typename), its arguments by Python name, and for a
    relation what is selected under it."""

    key: str
    name: str | None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    below: list[Selected] = field(default_factory=list)


def _split(term: str) -> tuple[str, str]:
    """An ORDER BY term as (expression, direction)."""
    if term.endswith(" DESC"):
        return term[: -len(" DESC")], " DESC"
    return term, ""


def _inner(
    entity: Entity,
    relation: Relation,
    parent_key: str,
    alias: str,
    scope: SqlScope,
    arguments: Mapping[str, Any],
    limit: str,
) -> tuple[str, list[str]]:
    """The SELECT of the related rows of one parent of `entity` (table row `alias` plus
    its display order as columns _o0, _o1, ...), and the outer ORDER BY terms on those
    columns."""
    pick, order = relation.orders(alias)
    helpers: list[str] = []
    outer: list[str] = []
    for position, term in enumerate(order):
        expression, direction = _split(term)
        helpers.append(f", {expression} AS _o{position}")
        outer.append(f"_o{position}{direction}")
    conditions = [_source(entity, relation, parent_key, alias, scope)]
    target = scope.model[relation.target]
    if relation.visible and target.visibility is not None:
        conditions.append(f"AND {scope.visible(target.name, alias)}")
    for name, condition in relation.arguments.items():
        extra = condition(arguments.get(name), alias)
        if extra is not None:
            conditions.append(f"AND {extra}")
    select = (
        f"SELECT {alias}.*{''.join(helpers)} {' '.join(conditions)}"
        f" ORDER BY {', '.join(pick)} LIMIT {limit}"
    )
    return select, outer


def _source(
    entity: Entity, relation: Relation, parent_key: str, alias: str, scope: SqlScope
) -> str:
    """FROM ... WHERE finding the relation's rows for one parent."""
    if relation.source is not None:
        return relation.source(parent_key, alias, scope)
    # through other relations: each step's rows (as its own field would list them) feed
    # the next step's key; the last step's ids name the rows
    key = parent_key
    steps: list[str] = []
    current = entity
    for position, name in enumerate(relation.through):
        step = current.relation(name)
        assert step is not None
        assert step.many
        step_alias = scope.alias("s")
        cap = str(scope.caps[(current.name, name)])
        select, _ = _inner(current, step, key, scope.alias("t"), scope, {}, cap)
        join = "FROM" if position == 0 else "CROSS JOIN LATERAL"
        steps.append(f"{join} ({select}) {step_alias}")
        key = f"{step_alias}.id"
        current = scope.model[step.target]
    return f"FROM {current.table} {alias} WHERE {alias}.id IN (SELECT {key} {' '.join(steps)})"


def relation_rows_sql(
    entity: Entity,
    relation: Relation,
    scope: SqlScope,
    keys: Sequence[Any],
    limit: int,
    arguments: Mapping[str, Any],
) -> str:
    """One statement loading a relation for many parents: rows of the target's table with
    a leading `_key` column (the parent's key) and helper columns `_o*`, in display order
    within each key (see `group_rows`)."""
    keys_param = scope.param(list(keys))
    select, outer = _inner(entity, relation, "k.id", "t", scope, arguments, scope.param(limit))
    return (
        f"SELECT k.id AS _key, x.* FROM unnest({keys_param}::bigint[]) AS k(id)"
        f" CROSS JOIN LATERAL ({select}) x ORDER BY k.id, {', '.join(f'x.{o}' for o in outer)}"
    )


def group_rows(rows: list[dict[str, Any]]) -> dict[Any, list[Mapping[str, Any]]]:
    """Rows of `relation_rows_sql` by key, helper columns removed. A row under several keys
    (a category of many businesses) is one shared mapping, so that whoever builds objects
    from the rows builds one per row."""
    result: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    shared: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        key = row.pop("_key")
        for name in [name for name in row if name.startswith("_o")]:
            del row[name]
        result[key].append(shared.setdefault(row["id"], row))
    return result


def object_json(entity: Entity, alias: str, selection: Sequence[Selected], scope: SqlScope) -> str:
    """A JSON object of the selected fields of the row `alias` of `entity`'s table."""
    if len(selection) > MAX_FIELDS_PER_OBJECT:
        raise NotCompilable("too many fields in one object", "size")
    parts: list[str] = []
    for selected in selection:
        parts.append(f"'{selected.key}'")
        parts.append(field_json(entity, alias, selected, scope))
    return f"json_build_object({', '.join(parts)})"


def field_json(entity: Entity, alias: str, selected: Selected, scope: SqlScope) -> str:
    if selected.name is None:
        return f"'{entity.name}'"
    column = entity.column(selected.name)
    if column is not None:
        return column.form.sql(f"{alias}.{column.source}")
    computed = entity.computed_field(selected.name)
    if computed is not None:
        return computed.sql(alias, scope)
    relation = entity.relation(selected.name)
    # bound (api/binding.py): the one entity with fields it gives itself, the viewer, is
    # no relation's target and is answered field by field (api/compiled.py `_me`)
    assert relation is not None
    return relation_json(entity, relation, f"{alias}.{relation.key}", selected, scope, alias)


def relation_json(
    entity: Entity,
    relation: Relation,
    parent_key: str,
    selected: Selected,
    scope: SqlScope,
    parent_alias: str | None = None,
) -> str:
    """A scalar subquery giving the relation's JSON (an array, or an object or null) for
    the parent (row `parent_alias` of `entity`) whose key is the SQL expression
    `parent_key`."""
    cap = scope.caps[(entity.name, relation.field)]
    alias = scope.alias("t")
    select, outer = _inner(entity, relation, parent_key, alias, scope, selected.arguments, str(cap))
    rows = scope.alias("x")
    target = scope.model[relation.target]
    shown = object_json(target, rows, selected.below, scope)
    if relation.many:
        ordered = ", ".join(f"{rows}.{term}" for term in outer)
        value = (
            f"(SELECT COALESCE(json_agg({shown} ORDER BY {ordered}), '[]'::json)"
            f" FROM ({select}) {rows})"
        )
    else:
        value = f"(SELECT {shown} FROM ({select}) {rows})"
    if relation.guard is not None:
        audience = scope.audience
        if parent_alias is None or audience.user_id is None or audience.is_service:
            raise NotCompilable("a guarded field the resolver answers for this viewer", "guarded")
        allowed = relation.guard.sql(audience, parent_alias, scope.params)
        value = f"CASE WHEN {allowed} THEN {value} ELSE {FALLBACK} END"
    return value


class NotCompilable(Exception):
    """The selection cannot be answered by one statement; the resolvers answer it.
    `reason` says why in one word: "size" (an object too wide for one statement),
    "guarded" (a guarded field the viewer may not read) or "not_found" (a lookup of an
    unknown id)."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason
