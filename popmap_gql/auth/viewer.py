"""The viewer: the person a request acts for, or an anonymous one."""

from __future__ import annotations

from dataclasses import dataclass

from popmap_gql.db.queries import Audience

__all__ = ["ANONYMOUS_VIEWER", "Viewer"]


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int | None = None
    username: str = ""
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    identity_provider: str = ""
    groups: tuple[str, ...] = ()
    is_staff: bool = False

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def audience(self) -> Audience:
        return Audience(user_id=self.user_id, is_staff=self.is_staff)


ANONYMOUS_VIEWER = Viewer()
