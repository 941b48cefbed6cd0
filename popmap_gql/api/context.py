"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from popmap_gql.api.loaders import Loaders
from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings

__all__ = ["Context", "Info"]


@dataclass
class Context:
    request: Request
    settings: Settings
    viewer: Viewer = ANONYMOUS_VIEWER

    @cached_property
    def loaders(self) -> Loaders:
        """Built on first use: a request answered from the response cache needs none."""
        return Loaders(self.viewer.audience)


Info = StrawberryInfo[Context, None]
