"""Request bodies and uploaded files of the MONAI Label server: a size limit, and no file left behind.

MONAI Label 0.8.5's upload endpoints (``PUT /datastore/label``, ``PUT /datastore/image``,
``POST /infer/{model}``, ``POST /infer/wsi_v2/{model}``) copy each uploaded file to
``tempfile.NamedTemporaryFile(...).name`` and delete it in a FastAPI *background task*, which
Starlette runs only after a successful response: every rejected upload (any 4xx or 5xx) stayed
in the temp folder for good, and a caller could fill the disk. :func:`install`, called by the
app when the server starts (:meth:`STBVLabelApp.server_mode`), therefore

* wraps those endpoint *functions* (``monailabel.endpoints.datastore.save_label`` and the like:
  module attributes that MONAI Label's route coroutines look up at call time, so its routes,
  parameters and RBAC checks stay exactly as they are): when the function returns *or raises*,
  the ``remove_file`` tasks it scheduled for its uploads run at once (a result file still to be
  streamed is left to its task). The same wrappers answer HTTP 400 for a ``params``/``info``
  form field that is not a JSON object (MONAI Label answered 500 after writing the upload), and
  ``/datastore/dataset`` gets its ZIP archive, which MONAI Label never deleted, removed after sending;
* wraps the ASGI app in :class:`UploadLimit`: a request body over ``--conf max_upload_mb``
  gets HTTP 413 before it is read (declared ``Content-Length``) or as soon as a streamed body
  passes the limit, so it never reaches an endpoint or the datastore (at most the limit is
  buffered, in Starlette's anonymous spool file, closed with the request);
* records which keys of an infer request the endpoint filled from uploaded files
  (:func:`trusted_keys`): the app accepts a file path there and only there, and ``params``
  may not override them (``image``, ``label``, ``session``).

Only :func:`trusted_keys` is needed outside the server (it is empty there).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from stbv_monai.label.http_errors import BAD_REQUEST, TOO_LARGE, http_error
from stbv_monai.label.safe_names import shown

__all__ = ["RESERVED_INFER_KEYS", "UploadLimit", "UploadTooLarge", "install", "limit_request_bodies", "trusted_keys"]

logger = logging.getLogger(__name__)

#: Infer request keys that only the endpoint sets (from the query, the uploads or a session).
RESERVED_INFER_KEYS = ("image", "label", "session")
_TRUSTED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("stbv_upload_keys", default=frozenset())
_GUARDED = "__stbv_guarded__"


def trusted_keys() -> frozenset[str]:
    """Keys of the infer request being served whose value is a file the endpoint itself wrote (uploads)."""
    return _TRUSTED.get()


def install(max_upload_bytes: int) -> None:
    """Put the size limit and the upload guards into the running MONAI Label server (idempotent)."""
    import monailabel.app as server
    from monailabel.endpoints import datastore, infer, wsi_infer

    limit_request_bodies(server.app, max_upload_bytes)
    _guard(datastore, "add_image", json_field="params")
    _guard(datastore, "save_label", json_field="params")
    _guard(datastore, "update_image_info", json_field="info")
    _guard(datastore, "update_label_info", json_field="info")
    _guard(infer, "run_inference", json_field="params", reserved=RESERVED_INFER_KEYS,
           check=_check_infer_request, trust=_infer_uploads)
    _guard(wsi_infer, "run_wsi_inference")
    _remove_after_sending(datastore, "download_dataset")
    logger.info("uploads: request bodies limited to %s; upload files removed after every request",
                _size(max_upload_bytes))


# ----------------------------------------------------------------------------- size limit


class UploadTooLarge(Exception):
    """Raised into the app's ``receive`` when a streamed body passes the limit (stops its parsing)."""


class UploadLimit:
    """ASGI wrapper answering 413 to any HTTP request whose body is over ``max_bytes``.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self._reject(scope, send)
        body = _CountedBody(self.max_bytes, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.exceeded:
                raise
        if body.exceeded and not body.started:
            await self._reject(scope, send)

    async def _reject(self, scope: dict, send: Callable) -> None:
        message = (f"upload too large: request bodies are limited to {_size(self.max_bytes)} "
                   "(the server's --conf max_upload_mb)")
        logger.warning("HTTP 413: %s %s: %s", scope.get("method"), scope.get("path"), message)
        payload = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": TOO_LARGE,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class _CountedBody:
    """``receive``/``send`` of one request: count body bytes, stop at the limit, then mute the app."""

    def __init__(self, max_bytes: int, receive: Callable, send: Callable) -> None:
        self.max_bytes, self._receive, self._send = max_bytes, receive, send
        self.size, self.exceeded, self.started = 0, False, False

    async def receive(self) -> dict:
        if self.exceeded:
            raise UploadTooLarge
        message = await self._receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.max_bytes:
                self.exceeded = True
                raise UploadTooLarge
        return message

    async def send(self, message: dict) -> None:
        if self.exceeded:
            return  # the app's own error answer: UploadLimit answers 413 instead
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def limit_request_bodies(asgi_app: Any, max_bytes: int) -> None:
    """Wrap a Starlette app's middleware stack (built at its first call) in :class:`UploadLimit`."""
    stack = getattr(asgi_app, "middleware_stack", None)
    if isinstance(stack, UploadLimit):
        stack.max_bytes = int(max_bytes)
    elif stack is None:
        asgi_app.add_middleware(UploadLimit, max_bytes=max_bytes)
    else:
        asgi_app.middleware_stack = UploadLimit(stack, max_bytes)


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB"


# ----------------------------------------------------------------------------- endpoint guards


def _guard(module: Any, name: str, *, json_field: str | None = None, reserved: tuple[str, ...] = (),
           check: Callable[[Mapping[str, Any]], None] | None = None,
           trust: Callable[[Mapping[str, Any]], frozenset[str]] | None = None) -> None:
    """Replace ``module.name`` by a wrapper that checks its form field and removes its uploads on exit."""
    original = getattr(module, name)
    if getattr(original, _GUARDED, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind_partial(*args, **kwargs).arguments
        tasks = arguments.get("background_tasks")
        token = _TRUSTED.set(trust(arguments) if trust else frozenset())
        result = None
        try:
            if json_field is not None:
                _check_json_object(json_field, arguments.get(json_field), reserved)
            if check is not None:
                check(arguments)
            result = original(*args, **kwargs)
            return result
        finally:
            _TRUSTED.reset(token)
            if tasks is not None:
                _remove_uploads_now(tasks, keep=getattr(result, "path", None))

    setattr(guarded, _GUARDED, True)
    setattr(module, name, guarded)


def _remove_after_sending(module: Any, name: str) -> None:
    """Replace ``module.name`` (it returns a temporary file) so that the file is removed once sent."""
    original = getattr(module, name)
    if getattr(original, _GUARDED, False):
        return

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from starlette.background import BackgroundTask

        response = original(*args, **kwargs)
        path = getattr(response, "path", None)
        if path and _is_temporary(path) and getattr(response, "background", None) is None:
            response.background = BackgroundTask(_remove_temporary, path)
        return response

    setattr(guarded, _GUARDED, True)
    setattr(module, name, guarded)


def _remove_uploads_now(tasks: Any, keep: Any = None) -> None:
    """Run now the ``remove_file`` tasks MONAI Label scheduled, except for ``keep`` (a file still to be sent)."""
    from monailabel.utils.others.generic import remove_file

    for task in list(getattr(tasks, "tasks", ())):
        if task.func is remove_file and task.args and task.args[0] != keep:
            tasks.tasks.remove(task)
            _remove_temporary(task.args[0])


def _remove_temporary(path: str) -> None:
    """Delete ``path`` if it is in the temp folder (never anything else); problems are logged."""
    if not _is_temporary(path):
        logger.warning("uploads: not removing %s: outside the temp folder", path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("uploads: cannot remove %s: %s", path, exc)


def _is_temporary(path: Any) -> bool:
    if not isinstance(path, str) or not path:
        return False
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(tempfile.gettempdir())


def _check_json_object(field: str, value: Any, reserved: tuple[str, ...]) -> None:
    if value is None or not isinstance(value, str) or not value.strip():
        return  # MONAI Label's default, or nothing sent
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise http_error(BAD_REQUEST, f"{field}: not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(parsed, dict):
        raise http_error(BAD_REQUEST, f"{field}: must be a JSON object, got {shown(value)}")
    clash = sorted(k for k in reserved if k in parsed)
    if clash:
        raise http_error(BAD_REQUEST, f"{field}: may not set {', '.join(clash)}: send the video id as the 'image' "
                                      "query parameter and files as the multipart uploads 'file' / 'label'")


def _check_infer_request(arguments: Mapping[str, Any]) -> None:
    if arguments.get("session_id"):
        raise http_error(BAD_REQUEST, "session_id: sessions are disabled in this app; send the video id "
                                      "(image=...) or upload the video as the multipart file 'file'")
    label = arguments.get("label")
    if label is not None and str(getattr(label, "filename", "") or "").endswith(".bin"):
        raise http_error(BAD_REQUEST, "label: '.bin' scribbles are not supported; send a NIfTI mask video")


def _infer_uploads(arguments: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(k for k, field in (("image", "file"), ("label", "label")) if arguments.get(field) is not None)
