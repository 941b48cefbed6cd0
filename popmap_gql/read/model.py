"""The read model: one declaration per GraphQL object type that shows rows of a table.

Each `Entity` says which table a type reads, how each of its fields is read from a row
(`Column` and its `Form`, or a `Computed` field with both a Python and a SQL form), who
sees which rows (the table's `Visibility`), and its relations (`Relation`: the keyed SQL
that finds the related rows, which of them are kept past the field's declared size, and
the order they are shown in). Everything else is derived from these declarations:

- the object builders (`Entity.values`): a row to the keyword arguments of the type;
- the relation loaders' SQL (`read.sql.relation_rows`) and the DataLoaders;
- the compiler that turns a selection into one SQL statement building the JSON answer
  (`read.compile`).

`read.binding.bind` checks the declarations against the built GraphQL schema when the
schema is built: a field of a bound type that the read model does not know, or a
declaration naming a field the type does not have, stops start-up.

Nothing here imports Strawberry or graphql-core; field names are the Python names of
the Strawberry types' fields (snake case).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from popmap_gql.db.lists import CATEGORY_ORDER, category_members
from popmap_gql.db.models import EventStatus
from popmap_gql.db.powers import Audience
from popmap_gql.db.rules import (
    ACTIVE_EVENTS,
    ACTS_FOR_BUSINESS,
    BUSINESS_VISIBILITY,
    ENDED,
    EVENT_VISIBILITY,
    ActsForBusiness,
    Visibility,
)
from popmap_gql.read.ids import encode_id

__all__ = [
    "CATEGORY_ORDER",
    "ENTITIES",
    "ENUM",
    "EVENT_ORDER",
    "INSTANT",
    "OPTIONAL_TEXT",
    "PLAIN",
    "Column",
    "Computed",
    "Entity",
    "Form",
    "ReadModel",
    "Relation",
    "SqlScope",
    "graphql_name",
]


# --- how a column's value is shown ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Form:
    """How a stored value becomes the field's value, in Python and in SQL (for the JSON
    PostgreSQL builds). The two forms of each kind are written side by side here."""

    kind: str  # "plain", "optional_text", "instant", "enum", "id"
    type_name: str = ""  # for "id": the GraphQL type the id names

    def python(self, value: Any) -> Any:
        if self.kind == "optional_text":
            return value or None
        if self.kind == "enum":
            return EventStatus(value)
        if self.kind == "id":
            return encode_id(self.type_name, value)
        return value

    def sql(self, expression: str) -> str:
        if self.kind == "optional_text":
            return f"NULLIF({expression}, '')"
        if self.kind == "instant":
            return iso_sql(expression)
        if self.kind == "id":
            return global_id_sql(self.type_name, expression)
        return expression


PLAIN = Form("plain")
OPTIONAL_TEXT = Form("optional_text")  # an empty text column is an absent value
INSTANT = Form("instant")
ENUM = Form("enum")


def global_id_sql(type_name: str, expression: str) -> str:
    """SQL for the global ID of a key (ids.encode_id): base64url of "Type:pk", unpadded.
    The type name is a constant of our declarations, never a client's value."""
    raw = f"encode(convert_to('{type_name}:' || {expression}, 'UTF8'), 'base64')"
    # encode() wraps base64 at 76 characters; ids are far shorter
    return f"rtrim(translate({raw}, '+/', '-_'), '=')"


def iso_sql(expression: str) -> str:
    """SQL for Python's isoformat() of a UTC timestamptz (what the GraphQL DateTime scalar
    writes): seconds, microseconds only when not zero, and +00:00."""
    return (
        f"to_char({expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN to_char({expression}, 'US') = '000000' THEN ''"
        f" ELSE '.' || to_char({expression}, 'US') END || '+00:00'"
    )


def graphql_name(python_name: str) -> str:
    """A field's GraphQL name: the Python name in camel case (the schema is built with
    auto_camel_case; the binding checks every field against this)."""
    first, *rest = python_name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


# entity name -> the entity with every column field (declared and derived)
ReadModel = Mapping[str, "Entity"]


# --- what a statement being built offers a declaration ---------------------------------


class SqlScope:
    """What SQL fragments of the read model may use while a statement is built: the
    request's audience, its parameters, and the visibility of the other entities."""

    def __init__(
        self,
        audience: Audience,
        params: list[Any],
        *,
        model: ReadModel,
        caps: Mapping[tuple[str, str], int],
        media_base: str = "",
    ) -> None:
        self.audience = audience
        self.params = params
        self.model = model  # the entities, their columns complete (see ReadModel)
        self.caps = caps  # (entity, relation field) -> the field's declared size
        self.media_base = media_base
        self._aliases = 0

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def alias(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def visible(self, entity_name: str, alias: str) -> str:
        visibility = self.model[entity_name].visibility
        return "TRUE" if visibility is None else visibility.sql(self.audience, alias, self.params)


# --- fields --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """A field read from one column of the row (`column`, the field's name by default).

    A plain field of the GraphQL type (no resolver, no arguments) is a column field by
    convention and need not be declared: the column of its name, shown by its type (`id`:
    the global ID; a DateTime: an instant; an enum: its member; a nullable String over a
    text column: empty text is null; anything else as stored). Declare a Column only to
    depart from that."""

    field: str
    form: Form = PLAIN
    column: str = ""

    @property
    def source(self) -> str:
        return self.column or self.field


@dataclass(frozen=True, slots=True)
class Computed:
    """A field computed from the row: `python(obj, context)` for the objects built from
    rows (reading their column fields and carried attributes, and the request's context),
    `sql(alias, scope)` for answers built by PostgreSQL; both are given here, once."""

    field: str
    python: Callable[[Any, Any], Any]
    sql: Callable[[str, SqlScope], str]


@dataclass(frozen=True, slots=True)
class Relation:
    """A field listing (or naming one of) another entity's rows.

    `source(parent_key, alias, scope)` is the SQL after SELECT: FROM and WHERE, finding the
    related rows of table alias `alias` for the parent row whose key (`key`, a column of
    the parent, "id" by default) is the SQL expression `parent_key`. `pick` orders the rows
    when only the field's declared size of them is kept; `order` orders what is shown.
    Both are lists of SQL expressions (on `alias` and the source's own aliases; `{a}`
    stands for `alias`). The target's visibility is applied unless `visible` is False
    (the source already restricts the rows, e.g. to the viewer's own). `arguments`: for
    each GraphQL argument (Python name), a function giving an extra SQL condition for its
    value (or None). `guard`: who may read the field (FORBIDDEN for others).
    """

    field: str
    target: str
    source: Callable[[str, str, SqlScope], str] | None
    order: tuple[str, ...]
    pick: tuple[str, ...] = ()
    # instead of `source`: the distinct rows reached through these relations of the
    # parent, each step with its own declared size, visibility and pick
    through: tuple[str, ...] = ()
    many: bool = True
    key: str = "id"
    visible: bool = True
    arguments: Mapping[str, Callable[[Any, str], str | None]] = dataclasses.field(
        default_factory=dict
    )
    guard: ActsForBusiness | None = None

    @property
    def key_attribute(self) -> str:
        """The attribute holding the key column on the parent's object (the id is `pk`)."""
        return "pk" if self.key == "id" else self.key

    def orders(self, alias: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(pick, order) with `{a}` replaced by `alias`."""
        order = tuple(term.format(a=alias) for term in self.order)
        pick = tuple(term.format(a=alias) for term in self.pick) or order
        return pick, order


@dataclass(frozen=True, slots=True)
class Entity:
    """A GraphQL object type backed by a table (or, without `table`, by the viewer)."""

    name: str  # the GraphQL type's name
    table: str
    visibility: Visibility | None
    columns: tuple[Column, ...] = ()
    computed: tuple[Computed, ...] = ()
    relations: tuple[Relation, ...] = ()
    # fields the object gives itself (the viewer's, from the token): not read from a table
    given: tuple[str, ...] = ()
    # (attribute, column): columns the Python object carries for its resolvers and
    # computed fields, which are not GraphQL fields
    carried: tuple[tuple[str, str], ...] = ()

    def with_columns(self, columns: tuple[Column, ...]) -> Entity:
        """The entity with `columns` added (the ones derived from its GraphQL type)."""
        return dataclasses.replace(self, columns=self.columns + columns)

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.field == name), None)

    def relation(self, name: str) -> Relation | None:
        return next((relation for relation in self.relations if relation.field == name), None)

    def computed_field(self, name: str) -> Computed | None:
        return next((item for item in self.computed if item.field == name), None)

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(
            [column.field for column in self.columns]
            + [item.field for item in self.computed]
            + [relation.field for relation in self.relations]
        )

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the GraphQL object for `row` (columns by name): its
        column fields, `pk` and the carried columns."""
        values = {column.field: column.form.python(row[column.source]) for column in self.columns}
        values["pk"] = row["id"]
        for attribute, column in self.carried:
            values[attribute] = row[column]
        return values


# --- the rules the declarations share -----------------------------------------------------


EVENT_ORDER = ("{a}.starts_at", "{a}.id")
# Event lists of a business keep, past their size, the events that end last (so every
# event not ended yet, up to the size), and show them soonest first.
LATEST_ENDING = ("{a}.ends_at DESC", "{a}.id DESC")


def _not_ended(upcoming: Any, alias: str) -> str | None:
    return ENDED.not_ended_rows_sql(alias) if upcoming else None


def _picture(
    key_column: str, url_column: str, url_attribute: str
) -> tuple[Callable[..., Any], Callable[..., str]]:
    """An uploaded picture's URL (the media base, then its key; built when asked, so a new
    CDN applies to every row), else the URL given, else none."""

    def python(obj: Any, context: Any) -> str | None:
        key = getattr(obj, key_column)
        return f"{context.media_base}/{key}" if key else (getattr(obj, url_attribute) or None)

    def sql(alias: str, scope: SqlScope) -> str:
        base = scope.param(scope.media_base)
        return (
            f"CASE WHEN {alias}.{key_column} <> '' THEN {base}::text || '/' || {alias}.{key_column}"
            f" ELSE NULLIF({alias}.{url_column}, '') END"
        )

    return python, sql


def _active_python(obj: Any, _: Any) -> bool:
    return ACTIVE_EVENTS.holds(obj.status, obj.ends_at, datetime.now(UTC))


def _active_sql(alias: str, _: SqlScope) -> str:
    return f"({ACTIVE_EVENTS.sql(alias)})"


def _viewer_is_owner_sql(alias: str, scope: SqlScope) -> str:
    uid = scope.audience.user_id
    if uid is None:
        return "FALSE"
    return f"COALESCE({alias}.owner_id = {scope.param(uid)}, FALSE)"


def _viewer_is_owner(obj: Any, context: Any) -> bool:
    viewer_id = context.viewer.user_id
    return viewer_id is not None and viewer_id == obj.owner_id


# --- relations, each with its SQL ---------------------------------------------------------


def _business_categories(key: str, a: str, _: SqlScope) -> str:
    return (
        f"FROM business_category bc JOIN category {a} ON {a}.id = bc.category_id"
        f" WHERE bc.business_id = {key}"
    )


def linked(table: str, alias: str, id_expression: str) -> str:
    """Join the row of `table` whose id is `id_expression` (a linking row's column) by one
    index lookup per linking row. Written as a LATERAL subquery that PostgreSQL does not
    flatten (OFFSET 0): as a plain join, the planner may hash the whole table to find the
    few rows one event or business links to, which is the slowest plan on the map page."""
    return (
        f"CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {table}.id = {id_expression}"
        f" OFFSET 0) {alias}"
    )


def _category_businesses(key: str, a: str, scope: SqlScope) -> str:
    rows = scope.caps[("Category", "businesses")]
    first = category_members(scope.audience, key, rows, scope.params)
    return f"FROM business {a} WHERE {a}.id = ANY(ARRAY(SELECT f.id FROM ({first}) f))"


def _business_events(key: str, a: str, _: SqlScope) -> str:
    return f"FROM participation p {linked('event', a, 'p.event_id')} WHERE p.business_id = {key}"


def _hosted_events(key: str, a: str, _: SqlScope) -> str:
    return f"FROM event {a} WHERE {a}.host_business_id = {key}"


def _available_events(key: str, a: str, _: SqlScope) -> str:
    return (
        f"FROM event {a} WHERE {ACTIVE_EVENTS.rows_sql(a)} AND NOT EXISTS (SELECT 1 FROM"
        f" participation p WHERE p.event_id = {a}.id AND p.business_id = {key})"
    )


def _host_business(key: str, a: str, _: SqlScope) -> str:
    return f"FROM business {a} WHERE {a}.id = {key}"


def _event_businesses(key: str, a: str, _: SqlScope) -> str:
    return f"FROM participation p {linked('business', a, 'p.business_id')} WHERE p.event_id = {key}"


def _owned_businesses(key: str, a: str, _: SqlScope) -> str:
    return f"FROM business {a} WHERE {a}.owner_id = {key}"


def _submitted_events(key: str, a: str, _: SqlScope) -> str:
    return f"FROM event {a} WHERE {a}.created_by_id = {key}"


_logo_python, _logo_sql = _picture("logo_key", "logo_url", "given_logo_url")
_image_python, _image_sql = _picture("image_key", "image_url", "given_image_url")

CATEGORY = Entity(
    name="Category",
    table="category",
    visibility=None,
    relations=(Relation("businesses", "Business", _category_businesses, ("{a}.name", "{a}.id")),),
)

BUSINESS = Entity(
    name="Business",
    table="business",
    visibility=BUSINESS_VISIBILITY,
    computed=(
        Computed("logo_url", _logo_python, _logo_sql),
        Computed("viewer_is_owner", _viewer_is_owner, _viewer_is_owner_sql),
    ),
    relations=(
        Relation("categories", "Category", _business_categories, CATEGORY_ORDER),
        Relation(
            "events",
            "Event",
            _business_events,
            EVENT_ORDER,
            pick=LATEST_ENDING,
            arguments={"upcoming": _not_ended},
        ),
        Relation("hosted_events", "Event", _hosted_events, EVENT_ORDER, pick=LATEST_ENDING),
        Relation(
            "available_events",
            "Event",
            _available_events,
            EVENT_ORDER,
            visible=False,  # active events are approved, which everyone sees
            guard=ACTS_FOR_BUSINESS,
        ),
    ),
    carried=(("owner_id", "owner_id"), ("logo_key", "logo_key"), ("given_logo_url", "logo_url")),
)

EVENT = Entity(
    name="Event",
    table="event",
    visibility=EVENT_VISIBILITY,
    computed=(
        Computed("image_url", _image_python, _image_sql),
        Computed("is_active", _active_python, _active_sql),
    ),
    relations=(
        Relation(
            "host_business",
            "Business",
            _host_business,
            ("{a}.id",),
            many=False,
            key="host_business_id",
        ),
        Relation("businesses", "Business", _event_businesses, ("p.joined_at", "p.id")),
        # the distinct categories in the lists its businesses show
        Relation(
            "categories", "Category", None, CATEGORY_ORDER, through=("businesses", "categories")
        ),
    ),
    carried=(
        ("host_business_id", "host_business_id"),
        ("created_by_id", "created_by_id"),
        ("image_key", "image_key"),
        ("given_image_url", "image_url"),
    ),
)

# The signed-in person: not a row of ours to read (the viewer comes from the token), but
# its lists are relations keyed by the user's id.
VIEWER = Entity(
    name="Viewer",
    table="",
    visibility=None,
    given=(
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "groups",
        "is_staff",
        "identity_provider",
    ),
    relations=(
        Relation(
            "businesses",
            "Business",
            _owned_businesses,
            ("{a}.name", "{a}.id"),
            visible=False,  # the viewer's own, verified or not
        ),
        Relation(
            "submitted_events",
            "Event",
            _submitted_events,
            ("{a}.created_at DESC", "{a}.id DESC"),
            visible=False,  # the viewer's own, in any status
        ),
    ),
)

# The entities as declared. Column fields that follow the conventions (see `Column`) are
# not listed: the API derives them from the GraphQL type's plain fields
# (api/binding.py `derive_columns`) and uses the completed entities, the `ReadModel`.
ENTITIES: dict[str, Entity] = {
    entity.name: entity for entity in (CATEGORY, BUSINESS, EVENT, VIEWER)
}
