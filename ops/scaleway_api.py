"""What the ops tools that call Scaleway's API (ops/registry_cleanup.py, ops/backup_drill.py)
share: the client from the environment's credentials, and the API's answer to a failed call.

Credentials come from the environment as the SDK reads them (``Client.from_env``,
``scaleway_core/profile/profile.py:98``); all three of ``SCW_ACCESS_KEY``, ``SCW_SECRET_KEY`` and
``SCW_DEFAULT_PROJECT_ID`` are required. The SDK validates them when an API is built
(``scaleway_core/api.py:105`` -> ``client.py:28``) and quotes a malformed secret key in its message
(``client.py:44``): it is masked before anything is printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import requests
from scaleway_core.api import ScalewayException
from scaleway_core.client import Client

REQUIRED_ENV = ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID")
_Api = TypeVar("_Api")


class CredentialsError(Exception):
    """The environment's Scaleway settings are missing or malformed (a usage error)."""


def from_env(api: Callable[[Client], _Api], api_url: str | None) -> tuple[_Api, str]:
    """``api`` (e.g. ``RegistryV1API``) on the environment's credentials, and the project id;
    ``api_url`` (tests: a fake on loopback) replaces Scaleway's."""
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        raise CredentialsError(f"missing credentials: set {', '.join(missing)}")
    client = Client.from_env()
    if api_url:
        client.api_url = api_url.rstrip("/")
    try:
        built = api(client)
    except ValueError as exc:
        message = str(exc).replace(str(client.secret_key), "<SCW_SECRET_KEY>")
        raise CredentialsError(f"invalid Scaleway settings: {message}") from exc
    return built, str(client.default_project_id)


def api_answer(exc: Exception) -> tuple[int | None, str] | None:
    """(HTTP status, the API's message) of a failed call that got an answer, else None."""
    if isinstance(exc, ScalewayException):
        response = exc.response
        try:
            body = response.json()
            detail = str(body.get("message") or body) if isinstance(body, dict) else str(body)
        except ValueError:
            detail = response.text.strip()[:200] or response.reason
        return response.status_code, detail
    if isinstance(exc, requests.JSONDecodeError):
        return None, "the API answered with a body that is not JSON"
    return None
