"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings

if TYPE_CHECKING:  # the loaders build GraphQL types, which need this module's Info
    from popmap_gql.api.loaders import Loaders

__all__ = ["Context", "Info"]


@dataclass
class Context:
    request: Request
    settings: Settings
    viewer: Viewer = ANONYMOUS_VIEWER

    @cached_property
    def loaders(self) -> Loaders:
        """Built on first use: a request answered from the response cache needs none."""
        from popmap_gql.api.loaders import Loaders

        return Loaders(self.viewer.audience)


Info = StrawberryInfo[Context, None]
