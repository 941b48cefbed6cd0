"""Permission classes: they read the context only, and fail with our error codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strawberry.permission import BasePermission

from popmap_gql.api.context import Info
from popmap_gql.api.ids import decode_id
from popmap_gql.errors import BadUserInput, Forbidden, NotFound, Unauthenticated

__all__ = ["IsAuthenticated", "IsBusinessOwner", "IsStaff", "business_in_arguments"]

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


def _require_sign_in(info: Info) -> None:
    if not info.context.viewer.is_authenticated:
        raise Unauthenticated("sign in to do this")


class IsAuthenticated(BasePermission):
    message = "sign in to do this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        _require_sign_in(info)
        return True


class IsStaff(BasePermission):
    message = "only staff may do this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        _require_sign_in(info)
        return info.context.viewer.is_staff

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class IsBusinessOwner(BasePermission):
    """The viewer owns the business named by the mutation's arguments, or is staff.

    A business the viewer cannot see is NOT_FOUND, checked before ownership, so the
    answer reveals nothing about unverified businesses of others.
    """

    message = "only the business's owner or staff may do this"

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        _require_sign_in(info)
        business_id = business_in_arguments(kwargs)
        business = await info.context.loaders.business_by_id.load(business_id)
        if business is None:
            raise NotFound("no such business")
        viewer = info.context.viewer
        return viewer.is_staff or business.owner_id == viewer.user_id

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)
