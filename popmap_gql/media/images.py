"""Is this upload a real image of its declared type, within the limits? Pillow decides."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from popmap_gql.errors import BadUserInput
from popmap_gql.media.rules import CONTENT_TYPES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

__all__ = ["check_image"]


def check_image(data: bytes, content_type: str, field: str) -> None:
    """BAD_USER_INPUT unless its structure and its whole pixel data read as `content_type`.

    CPU-bound (it decodes the image): call it in a worker thread. Dimensions are checked
    from the header before anything is decoded, so a small file that claims a huge image
    (a decompression bomb) costs nothing.
    """
    expected = CONTENT_TYPES[content_type].pillow_format
    try:
        # Pillow itself errors on images of twice its own pixel limit; ours is lower still.
        with Image.open(io.BytesIO(data), formats=[expected]) as image:
            width, height = image.size
            _check_dimensions(width, height, field)
            image.verify()  # the file's structure (PNG: every chunk's CRC up to IEND)
        with Image.open(io.BytesIO(data), formats=[expected]) as image:
            image.load()  # and every pixel decodes
    except BadUserInput:
        raise
    except Image.DecompressionBombError:
        raise BadUserInput(
            f"the image has more than {MAX_IMAGE_PIXELS} pixels", field=field
        ) from None
    except UnidentifiedImageError:
        raise BadUserInput(
            f"the uploaded file is not an image of type {content_type}", field=field
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # Pillow's ways of saying "truncated or corrupt" once the format was recognised
        raise BadUserInput(
            f"the uploaded file is not a complete image of type {content_type}", field=field
        ) from None


def _check_dimensions(width: int, height: int, field: str) -> None:
    # Pillow opens no image with a side of 0 pixels (UnidentifiedImageError)
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise BadUserInput(
            f"the image is {width} x {height} pixels; at most {MAX_IMAGE_SIDE} per side and"
            f" {MAX_IMAGE_PIXELS} in all",
            field=field,
        )
