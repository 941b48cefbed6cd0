"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings
from popmap_gql.media.stores import public_base

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
        from popmap_gql.api.types import BUILDERS, RELATION_CAPS

        return Loaders(self.viewer.audience, RELATION_CAPS, BUILDERS)

    @cached_property
    def api_base(self) -> str:
        """The API's origin as this request reached it (behind trusted proxies, theirs)."""
        return str(self.request.base_url).rstrip("/")

    @cached_property
    def media_base(self) -> str:
        """What published media keys are appended to, to make their public URLs."""
        return public_base(self.settings) or self.api_base


Info = StrawberryInfo[Context, None]
