"""Turn the package's input errors into HTTP answers MONAI Label clients can show.

MONAI Label runs tasks inside its FastAPI endpoints and has no handler of its own for task
errors (an uncaught one becomes a bare 500). A :class:`fastapi.HTTPException` raised in a task
reaches the client as that status with ``{"detail": message}``, and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from fastapi import HTTPException

from stbv_monai.errors import InputError, find_input_error

__all__ = ["BAD_REQUEST", "CONFLICT", "NOT_FOUND", "TOO_LARGE", "UNAVAILABLE", "http_error", "input_errors_as_http"]

logger = logging.getLogger(__name__)

BAD_REQUEST = 400
NOT_FOUND = 404
CONFLICT = 409
TOO_LARGE = 413
UNAVAILABLE = 503


def http_error(status: int, message: str) -> HTTPException:
    """An HTTP error whose ``detail`` is ``message`` (logged as a warning)."""
    logger.warning("HTTP %d: %s", status, message)
    return HTTPException(status_code=status, detail=message)


@contextlib.contextmanager
def input_errors_as_http(status: int = BAD_REQUEST) -> Iterator[None]:
    """Re-raise an :class:`InputError` (also one wrapped by a library) as an HTTP ``status`` error."""
    try:
        yield
    except HTTPException:
        raise
    except Exception as exc:
        found = exc if isinstance(exc, InputError) else find_input_error(exc)
        if found is None:
            raise
        raise http_error(status, str(found)) from exc
