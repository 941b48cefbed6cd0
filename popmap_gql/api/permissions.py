"""Permission classes: they read the context only, and fail with our error codes.

Who may do what is `popmap_gql.db.powers.POWERS`; these classes apply it, with the rules
of `popmap_gql.db.rules` where a row decides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strawberry.permission import BasePermission

from popmap_gql.api.context import Context, Info
from popmap_gql.db.powers import POWERS, UPLOAD_SAVED_BY, People
from popmap_gql.db.rules import ACTS_FOR_BUSINESS
from popmap_gql.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from popmap_gql.read.ids import decode_id

__all__ = [
    "IsAuthenticated",
    "IsBusinessOwner",
    "IsStaff",
    "MayUpload",
    "business_in_arguments",
    "guard",
    "require_power_in",
]

# A mutation of one business names it `id`; joinEvent and leaveEvent name it `businessId`.
# updateBusiness took `businessId` before the rule and still does, deprecated, for a release.
_BUSINESS_ARGUMENTS = (("id", "id"), ("business_id", "businessId"))


def business_in_arguments(arguments: Mapping[str, Any]) -> int:
    """The primary key of the business a mutation names: exactly one of its business
    arguments must be given, else BAD_USER_INPUT."""
    given = [
        (field, arguments[name])
        for name, field in _BUSINESS_ARGUMENTS
        if arguments.get(name) is not None
    ]
    if len(given) != 1:
        raise BadUserInput("give exactly one of id and the deprecated businessId", field="id")
    [(field, value)] = given
    return decode_id("Business", value, field=field)


def require_power_in(context: Context, operation: str) -> None:
    """A service may use `operation` only with the scope POWERS names for it: FORBIDDEN
    otherwise, with `requiredScope` when a scope would allow it."""
    power = POWERS[operation]
    if power.scope is None:
        raise Forbidden("services cannot do this")
    if power.scope not in context.viewer.scopes:
        scope = f"{context.settings.cognito_resource_server}/{power.scope.value}"
        raise Forbidden(f"this needs the scope {scope}", required_scope=scope)


def _require_sign_in(info: Info) -> bool:
    """Whether the viewer is a person; a service is checked against its scopes instead."""
    viewer = info.context.viewer
    if not viewer.is_authenticated:
        raise Unauthenticated("sign in to do this")
    if viewer.is_service:
        require_power_in(info.context, info.field_name)
        return False
    return True


class IsAuthenticated(BasePermission):
    """Signed in: any person, or a service holding the operation's scope."""

    message = "sign in to do this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        _require_sign_in(info)
        return True


class IsStaff(BasePermission):
    """Staff, or a service holding the operation's scope."""

    message = "only staff may do this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return not _require_sign_in(info) or info.context.viewer.is_staff

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class IsBusinessOwner(BasePermission):
    """The viewer owns the business named by the mutation's arguments, or is staff.

    A business the viewer cannot see is NOT_FOUND, checked before ownership, so the
    answer reveals nothing about unverified businesses of others.
    """

    message = ACTS_FOR_BUSINESS.refusal

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if not _require_sign_in(info):
            return True  # a service the operation's scope allows (none may act as an owner)
        business_id = business_in_arguments(kwargs)
        business = await info.context.loaders.by_id("Business").load(business_id)
        if business is None:
            raise NotFound("no such business")
        return ACTS_FOR_BUSINESS.holds(info.context.viewer.audience, business.owner_id)

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class MayUpload(BasePermission):
    """Signed in; a service only for a kind of upload it may save (UPLOAD_SAVED_BY), so a
    logo is FORBIDDEN to every service and names no scope, whatever scopes it holds."""

    message = "sign in to do this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.viewer.is_service:
            require_power_in(info.context, UPLOAD_SAVED_BY[kwargs["kind"]])
        else:
            _require_sign_in(info)
        return True


_GUARDS: dict[People, list[type[BasePermission]]] = {
    People.SIGNED_IN: [IsAuthenticated],
    # The command applies the event rule (MAY_CHANGE_EVENT) to the event it locks.
    People.EVENT_EDITOR: [IsAuthenticated],
    People.OWNER_OR_STAFF: [IsAuthenticated, IsBusinessOwner],
    People.STAFF: [IsStaff],
}


# Where a service's permission depends on an argument, not on the operation alone.
_BY_ARGUMENT: dict[str, list[type[BasePermission]]] = {"createUpload": [MayUpload]}
if POWERS["createUpload"].people is not People.SIGNED_IN:
    raise TypeError("MayUpload lets every signed-in person create uploads: update it")


# Mutations whose command applies their row's rule itself, in the statement that writes:
# joinEvent and leaveEvent check "owner or staff" (ACTS_FOR_BUSINESS) on the business
# they name, with the same answers in the same order as IsBusinessOwner (NOT_FOUND for a
# business the viewer cannot see, then FORBIDDEN), and check and write in one round trip.
_IN_COMMAND: dict[str, People] = {
    "joinEvent": People.OWNER_OR_STAFF,
    "leaveEvent": People.OWNER_OR_STAFF,
}
for _mutation, _people in _IN_COMMAND.items():
    if POWERS[_mutation].people is not _people:
        raise TypeError(f"the command of {_mutation} checks {_people}: update it")


def guard(mutation: str) -> list[type[BasePermission]]:
    """The permission classes of a mutation, from its row in POWERS."""
    if mutation in _IN_COMMAND:
        return [IsAuthenticated]  # signed in; a service needs the row's scope (it has none)
    return _BY_ARGUMENT.get(mutation) or _GUARDS[POWERS[mutation].people]
