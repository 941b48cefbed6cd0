"""Which request bodies the endpoint executes: a strict reading of Content-Type.

The check is our CSRF guard. A browser sends a cross-site POST without a CORS preflight
only for a "simple" content type (text/plain, application/x-www-form-urlencoded,
multipart/form-data), judged by the media type before any `;`. So the media type is
parsed the same way (RFC 9110 section 8.3.1) and must itself be JSON: a substring match
would let `text/plain;application/json`, a simple request, through.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from popmap_gql.http.request_errors import BadRequest

__all__ = [
    "MediaType",
    "check_json_request",
    "parse_media_type",
]

# RFC 9110 sections 5.6.2 (token), 5.6.4 (quoted-string) and 8.3.1 (media type).
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?P<quoted>(?:[^"\\]|\\.)*)"'
_ESSENCE = re.compile(rf"[ \t]*(?P<type>{_TCHARS})/(?P<subtype>{_TCHARS})[ \t]*")
_PARAMETER = re.compile(
    rf";[ \t]*(?:(?P<name>{_TCHARS})=(?:(?P<token>{_TCHARS})|{_QUOTED}))?[ \t]*"
)
# Long enough for any real Content-Type; a longer one is refused before any regex runs.
MAX_CONTENT_TYPE_LENGTH = 256


def _unsupported(why: str) -> BadRequest:
    # GraphQL over HTTP: 415 for a Content-Type the server does not support.
    return BadRequest(why, status=415, code="UNSUPPORTED_MEDIA_TYPE")


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str  # lower case
    subtype: str  # lower case
    parameters: dict[str, str] = field(default_factory=dict)  # names lower case

    @property
    def is_json(self) -> bool:
        """application/json, or a JSON-based type such as application/graphql-response+json."""
        return self.type == "application" and (
            self.subtype == "json"
            or (self.subtype.endswith("+json") and len(self.subtype) > len("+json"))
        )


def parse_media_type(value: str) -> MediaType | None:
    """`type/subtype *( OWS ";" OWS [ parameter ] )`, or None when it is not one."""
    if len(value) > MAX_CONTENT_TYPE_LENGTH:
        return None
    essence = _ESSENCE.match(value)
    if essence is None:
        return None
    parameters: dict[str, str] = {}
    position = essence.end()
    while position < len(value):
        parameter = _PARAMETER.match(value, position)
        if parameter is None:
            return None
        position = parameter.end()
        if parameter["name"] is None:
            continue  # "application/json;" : an empty parameter is allowed and means nothing
        quoted = parameter["quoted"]
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else parameter["token"]
        parameters.setdefault(parameter["name"].lower(), text)
    return MediaType(essence["type"].lower(), essence["subtype"].lower(), parameters)


@functools.lru_cache(maxsize=64)
def check_json_request(content_type: str | None) -> None:
    """A 415 BadRequest unless a POST body of this Content-Type is one we execute:
    JSON only, in UTF-8 (GraphQL over HTTP assumes UTF-8 when no charset is given).

    Clients send a handful of Content-Type values, so accepted ones are remembered (a
    refusal raises and is never remembered, and a value over MAX_CONTENT_TYPE_LENGTH is
    always refused: 64 short strings at most).
    """
    if content_type is None or not content_type.strip():
        raise _unsupported("Missing Content-Type: send application/json")
    media_type = parse_media_type(content_type)
    if media_type is None or not media_type.is_json:
        raise _unsupported("Unsupported content type: send application/json")
    charset = media_type.parameters.get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise _unsupported("Unsupported charset: send UTF-8")
