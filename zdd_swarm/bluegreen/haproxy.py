"""HAProxy's side of the HAProxy router: its configuration, and the runtime
API commands that switch it and read it back.

The configuration has a backend per colour and chooses one per request
from a map file, ``/etc/haproxy/colour.map``, whose one entry ``active``
names the colour. The map file is a Swarm config with Go templating, so
each task is born with the colour the router service's label
``zdd-swarm.router.colour`` names when the task is created; a switch
changes that label (no task restarts) and sets the entry in every running
task through the runtime API (no reload). The runtime API listens on a TCP
port that the router service publishes in host mode: the controller reaches
each task at its node's address.

HAProxy's management guide (2.6, section 9.3), relied on here:

- "set map <map> [<key>|#<ref>] <value>: Modify the value corresponding to
  each key <key> in a map <map>. <map> is the #<id> or <file> returned by
  "show map"."
- "show map [[@<ver>] <map>]: ... If a <map> is specified, its contents are
  dumped ... the first column is a unique entry identifier ... The second
  column is the pattern and the third column is the sample".
- "The non-interactive mode is the default ... a single line may be sent.
  It is processed as a whole, responses are sent back, and the connection
  closes after the end of the response."

The socket's level is ``operator``, "the default level [which] fits most
common uses. All data can be read, and only non-sensitive changes are
permitted" (configuration manual, ``level``): ``set map`` is not among the
commands the guide reserves to ``admin``, and HAProxy 2.6.12 (Debian 12)
accepts it at ``operator`` (checked on the lab).
"""

from __future__ import annotations

import socket

from ..errors import EngineError
from .model import Colour

__all__ = [
    "ADMIN_PORT",
    "MAP_KEY",
    "MAP_PATH",
    "RuntimeAPIError",
    "map_template",
    "parse_set_map",
    "parse_show_map",
    "render_haproxy",
    "send_command",
    "set_map_command",
    "show_map_command",
]

MAP_PATH = "/etc/haproxy/colour.map"
"""Where the router mounts the colour map (a templated Swarm config)."""
MAP_KEY = "active"
"""The map's one key: its value is the colour that gets the traffic."""
ADMIN_PORT = 9999
"""The runtime API's port, unless the router service's label says another."""


class RuntimeAPIError(EngineError):
    """HAProxy's runtime API could not be reached, or refused a command."""


_HAPROXY = """\
# zdd_swarm blue-green router of {app}: the colour map ({map}) chooses the colour
global
    log stderr format raw local0 warning
    # the runtime API, for the switch: publish it in host mode, reachable
    # from the deploy host only (anyone who reaches it can switch the traffic)
    stats socket ipv4@0.0.0.0:{admin_port} level operator
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
# Swarm's DNS, asked again every second: the tasks of each colour as they run
resolvers swarm
    nameserver dns 127.0.0.11:53
    hold valid 1s
    accepted_payload_size 8192
frontend router
    bind :{listen}
    http-response set-header {header} %[be_name]
    use_backend %[str({key}),map({map})]
# no health checks: a server coming from DNS would wait for them, with no
# server up meanwhile (503); Swarm's DNS lists only healthy tasks, and a
# refused connection is retried on another server. Addresses come from the
# resolvers only (init-addr none): at start, the system's resolver would
# wait out a timeout for each server of a colour that has no task
{backends}"""

_BACKEND = """\
backend {colour}
    balance roundrobin
    server-template task 16 {upstream}:{port} resolvers swarm init-addr none
"""


def render_haproxy(
    app: str, *, port: int = 8080, listen: int = 8080, admin_port: int = ADMIN_PORT, header: str
) -> str:
    """The HAProxy configuration of ``app``'s router: a backend per colour
    (its service, port ``port``), the one the colour map names gets each
    request; the router listens on ``listen``, its runtime API on ``admin_port``."""
    backends = "".join(
        _BACKEND.format(colour=c.value, upstream=c.service(app), port=port) for c in Colour
    )
    return _HAPROXY.format(
        app=app,
        map=MAP_PATH,
        key=MAP_KEY,
        listen=listen,
        admin_port=admin_port,
        header=header,
        backends=backends,
    )


def map_template(label: str) -> str:
    """The colour map as a Swarm config template (``Templating: golang``): a
    task is born with the colour the service label ``label`` names."""
    return (
        "# the colour that gets the traffic: the router service's label when the task started\n"
        f'{MAP_KEY} {{{{index .Service.Labels "{label}"}}}}\n'
    )


def set_map_command(colour: Colour) -> str:
    return f"set map {MAP_PATH} {MAP_KEY} {colour.value}"


def show_map_command() -> str:
    return f"show map {MAP_PATH}"


def parse_set_map(answer: str) -> None:
    """``set map`` answers an empty line when it did it, else why not."""
    if answer.strip():
        raise RuntimeAPIError(f"HAProxy refused the switch: {answer.strip().splitlines()[0]}")


def parse_show_map(answer: str) -> Colour | None:
    """The colour of ``show map``'s answer (``0x55d0c0ffee00 active green``);
    None when the entry names no colour. ``RuntimeAPIError`` for an answer
    that is not a map (e.g. ``Unknown map identifier``)."""
    entries: dict[str, str] = {}
    for line in answer.splitlines():
        if not line.strip():
            continue
        words = line.split()
        if len(words) not in (2, 3) or not words[0].startswith("0x"):
            raise RuntimeAPIError(f"HAProxy has no colour map {MAP_PATH}: {line.strip()}")
        entries[words[1]] = words[2] if len(words) == 3 else ""
    try:
        return Colour(entries.get(MAP_KEY, ""))
    except ValueError:
        return None


def send_command(address: str, port: int, command: str, timeout: float = 2.0) -> str:
    """Send one command to the runtime API at ``address:port`` and return its
    answer (non-interactive mode: HAProxy closes the connection after it).
    ``RuntimeAPIError`` when it cannot be reached."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise RuntimeAPIError(
            f"HAProxy's runtime API at {address}:{port} does not answer: {exc}"
        ) from exc
    return b"".join(chunks).decode(errors="replace")
