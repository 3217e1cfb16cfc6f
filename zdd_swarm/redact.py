"""Masking of secret values in text that leaves the process.

zdd_swarm never prints a service's env values on purpose (spec diffs name
paths, not values), but text it passes on comes from elsewhere: a task's
error message, a gate's detail, a reason that quotes them. Before such text
reaches the CLI's output, its logs or a webhook, ``mask_secrets`` replaces

- the value of ``KEY=VALUE`` / ``KEY: VALUE`` when the key names a secret
  (``*PASSWORD*``, ``*PASSWD*``, ``*TOKEN*``, ``*SECRET*``, ``*API_KEY*``,
  ``*PRIVATE_KEY*``, ``*CREDENTIAL*``), case-insensitively;
- the password of a URL's ``user:password@``;
- the credentials after ``Bearer``/``Basic`` (an ``Authorization`` header).

The value is replaced by ``***``; the key stays, so the text still says what
was there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "mask_secrets", "mask_url", "mask_values"]

MASK = "***"

_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|PRIVATE_?KEY|CREDENTIAL)"
    r"[A-Za-z0-9_.-]*"
)
_KEY_VALUE = re.compile(
    rf"""(?P<key>["']?\b{_SECRET_KEY}["']?\s*(?:=|:)\s*)(?P<quote>["']?)(?P<value>[^\s"',;&]+)""",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(?=@)", re.I)
_BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I)


def mask_secrets(text: str) -> str:
    """``text`` with the values of secret-named keys and URL passwords masked."""
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['quote']}{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)


def mask_values(data: Any) -> Any:
    """A copy of a JSON-like ``data`` with every string masked, and the value
    of every secret-named key replaced whole."""
    if isinstance(data, str):
        return mask_secrets(data)
    if isinstance(data, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and _SECRET_NAME.fullmatch(key) and data[key]
            else mask_values(data[key])
            for key in data
        }
    if isinstance(data, list):
        return [mask_values(item) for item in data]
    if isinstance(data, tuple):
        return tuple(mask_values(item) for item in data)
    return data


def mask_url(url: str) -> str:
    """Scheme and host of ``url`` only: a webhook's path and query are often
    its secret (a Slack incoming webhook is one)."""
    found = re.match(r"(?P<base>[a-z][a-z0-9+.-]*://)(?:[^/@\s]*@)?(?P<host>[^/?#\s]*)", url, re.I)
    if found is None:
        return MASK
    rest = url[found.end() :]
    return f"{found['base']}{found['host']}" + ("/" + MASK if rest.strip("/") else "")


_SECRET_NAME = re.compile(_SECRET_KEY, re.IGNORECASE)
