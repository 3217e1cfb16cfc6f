"""The router's public address as a probe: requests sent through it, and
who answered them.

A switch counts as done only once requests through the address the users
reach reach the new colour; the router's own view (its labels, its mounted
config) says what it was told, the address says what users get. Who
answered is read from the response, where the user says: the body (the
lab's app answers ``GET /`` with its image tag) or a header
(``X-Zdd-Colour``, which the nginx and HAProxy routers of ``proxy.py``
add). An answer names a colour when it is the colour's name, its service's
image, or that image's tag.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from .model import Colour

__all__ = ["Fetch", "RouterProbe", "identities", "image_tag", "urllib_fetch"]

Fetch = Callable[[str, float], tuple[Mapping[str, str], str]]
"""GET a URL within a timeout (seconds): the response's headers and body.
Raises ``OSError`` when no answer came (a status other than 2xx is one)."""

_BODY_LIMIT = 4096


def urllib_fetch(url: str, timeout: float) -> tuple[Mapping[str, str], str]:
    """``Fetch`` with the standard library (proxies from the environment, as ``HttpGate``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(_BODY_LIMIT).decode(errors="replace")
            return dict(response.headers.items()), body
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code}") from None
    except ValueError as exc:
        raise OSError(str(exc)) from None


def image_tag(image: str) -> str:
    """The tag of an image reference (``registry:5000/web:2@sha256:...`` -> ``2``;
    none: ``latest``)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.partition(":")[2] or "latest"


def identities(colour: Colour, image: str | None) -> frozenset[str]:
    """What an answer from ``colour`` may say: its name, its image, the image's tag."""
    names = {colour.value}
    if image:
        names |= {image, image.split("@", 1)[0], image_tag(image)}
    return frozenset(names)


@dataclass(frozen=True)
class RouterProbe:
    """``requests`` requests to ``url``; the answer of each is read from
    ``answer``: ``body`` (its first line) or ``header:NAME``."""

    url: str
    answer: str = "body"
    requests: int = 5
    """Requests per look; all of them must name the colour (the router may
    have several tasks, some still on the old configuration)."""
    timeout: float = 2.0
    fetch: Fetch = field(default=urllib_fetch, compare=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("router_url", self.url, "an http:// or https:// URL")
        kind, _, header = self.answer.partition(":")
        if self.answer != "body" and (kind != "header" or not header.strip()):
            raise ConfigError("router_answer", self.answer, "body or header:NAME")
        if not isinstance(self.requests, int) or self.requests < 1:
            raise ConfigError("router_probe.requests", self.requests, "at least 1")
        if self.timeout <= 0:
            raise ConfigError("router_probe.timeout", self.timeout, "a positive number of seconds")

    def read(self) -> str:
        """The answer of one request (raises ``OSError`` when none came)."""
        headers, body = self.fetch(self.url, self.timeout)
        if self.answer == "body":
            return (body.strip().splitlines() or [""])[0].strip()
        wanted = self.answer.partition(":")[2].strip().lower()
        for name, value in headers.items():
            if name.lower() == wanted:
                return value.strip()
        return ""

    def reaches(self, names: Collection[str]) -> tuple[bool, str]:
        """Whether every request's answer is among ``names``; and what they said."""
        answers: list[str] = []
        for _ in range(self.requests):
            try:
                answers.append(self.read() or "(nothing)")
            except OSError as exc:
                answers.append(f"no answer ({exc})")
        wrong = [a for a in answers if a not in names]
        if not wrong:
            return True, f"{len(answers)} of {len(answers)} answers from {answers[0]}"
        said = ", ".join(sorted(set(wrong)))
        return False, f"{len(wrong)} of {len(answers)} answers through {self.url}: {said}"
