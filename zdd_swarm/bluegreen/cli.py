"""``zdd-swarm bluegreen deploy|promote|rollback|status|watch``: a thin shell
over ``BlueGreen``, with the exit codes of the rest of the CLI (0 switched or
awaiting promotion, 1 not switched or switched back, 2 bad input, 3 still in
flight when a watch stopped, 4 the switch back failed, 5 engine errors)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ..canary.spec import load_analysis
from ..cli import (
    _deadline_options,
    _Obj,
    _options,
    _run,
    _stack_engine,
    _stdout,
    cli,
    output_options,
)
from ..config import parse_duration
from ..controller import Controller
from ..errors import ConfigError, InputError, ServiceNotFound
from ..gates import Gate, parse_http_gate, parse_tcp_gate
from .flow import BlueGreen, BlueGreenOptions
from .lease import lease_state
from .model import LABEL_APP, Colour
from .router import Router
from .routing import check_remembered, parse_router
from .store import Pair, read_pair
from .watch import follow, last_result

__all__ = ["bluegreen", "dispatch", "is_pair", "parse_router"]


def _router_options(fn: Callable[..., Any], required: bool = False) -> Callable[..., Any]:
    fn = click.option(
        "--router-answer",
        metavar="body|header:NAME",
        help="Where an answer through --router-url names who answered (body): the colour, "
        "its image or the image's tag.",
    )(fn)
    fn = click.option(
        "--router-url",
        metavar="URL",
        help="The router's public address: a switch is done only once requests through it "
        "reach the new colour (within --switch-timeout), else it switches back.",
    )(fn)
    fn = click.option(
        "--router-service", help="The router's own Swarm service (checked to exist)."
    )(fn)
    return click.option(
        "--router",
        "router_spec",
        required=required,
        metavar="KIND:ARG",
        help="How traffic reaches a colour: labels:PREFIX[,PREFIX...] (Traefik, caddy), "
        "nginx:SERVICE or haproxy:SERVICE (a router service whose config names the colour)"
        + ("; kept with the pair." if required else "; by default the one of the last deploy."),
    )(fn)


def _blue_green(
    controller: Controller, app: str, params: dict[str, Any], *, deploy: bool = False
) -> BlueGreen:
    """Through the router given; without ``--router`` (promote, rollback,
    status), through the one the pair remembers; without ``--scale-down-delay``,
    with the deploy's. A router given to anything but a deploy must be the
    remembered one (exit 2, nothing changed)."""
    engine: Any = controller.engine
    if not deploy and params.get("scale_down_delay") is None:
        params = {**params, "scale_down_delay": read_pair(engine, app).scale_down_delay}
    options, rollout = _bg_options(params), _options(params, None)
    given = params.get("router_spec")
    if given is None:
        if params.get("router_service"):
            raise ConfigError("--router-service", params["router_service"], "only with --router")
        return BlueGreen.remembered(app, controller, options, rollout)
    router = parse_router(given, app, engine, params.get("router_service"), controller)
    if not deploy:
        check_remembered(read_pair(engine, app), router, "--router")
    return BlueGreen(router, controller, options, rollout)


def _bg_options(params: dict[str, Any]) -> BlueGreenOptions:
    kwargs: dict[str, Any] = {}
    names = ("preview_window", "post_switch_window", "switch_timeout", "scale_down_delay")
    for name in (*names, "router_url", "router_answer"):
        if params.get(name) is not None:
            kwargs[name] = params[name]
    preview: list[Gate] = [parse_http_gate(g) for g in params.get("preview_http") or ()]
    preview += [parse_tcp_gate(g) for g in params.get("preview_tcp") or ()]
    post = [parse_http_gate(g) for g in params.get("post_switch_http") or ()]
    for name in ("preview_analysis", "post_switch_analysis"):
        where = "--" + name.replace("_", "-")
        files = params.get(name) or ()
        kwargs[name] = tuple(m for spec in files for m in load_analysis(spec, where))
    return BlueGreenOptions(
        auto_promote=not params.get("manual_promote", False),
        preview_checks=tuple(preview),
        post_switch_checks=tuple(post),
        **kwargs,
    )


def _analysis_option(stage: str, what: str) -> Callable[..., Any]:
    return click.option(
        f"--{stage}-analysis",
        multiple=True,
        metavar="FILE[:NAME]",
        help=f"The analysis NAME of FILE (analyses: as in a canary's --steps-file; without "
        f"NAME its only one), measured {what}; if it fails, "
        + ("no switch." if stage == "preview" else "switch back."),
    )


@click.group()
def bluegreen() -> None:
    """Blue-green releases: APP-blue and APP-green behind a router; switch, switch back."""


@bluegreen.command("deploy")
@click.argument("app")
@click.option("--image", required=True, help="The release, deployed to the idle colour.")
@functools.partial(_router_options, required=True)
@click.option(
    "--preview-http", multiple=True, metavar="URL[,status=200]", help="Preview check (HTTP)."
)
@click.option("--preview-tcp", multiple=True, metavar="HOST:PORT", help="Preview check (TCP).")
@_analysis_option("preview", "while the preview checks are sampled")
@click.option("--preview-window", help="How long the preview checks are sampled (10s).")
@click.option(
    "--post-switch-http",
    multiple=True,
    metavar="URL[,status=200]",
    help="Check after the switch; a failure switches back at once.",
)
@_analysis_option("post-switch", "after the switch")
@click.option("--post-switch-window", help="How long post-switch checks are sampled (10s).")
@click.option("--switch-timeout", help="How long the router may take to show the switch (30s).")
@click.option("--scale-down-delay", help="How long the old colour stays up (30s).")
@click.option("--manual-promote", is_flag=True, help="Stop before the switch; promote later.")
@_deadline_options
@output_options
@click.pass_obj
def deploy(
    obj: _Obj, /, app: str, image: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Deploy IMAGE to the idle colour of APP, check it, switch the router to it."""
    _run(
        obj,
        as_json,
        log_format,
        verbose,
        lambda c: _blue_green(c, app, params, deploy=True).deploy(app, image),
        app,
        params,
    )


@bluegreen.command("promote")
@click.argument("app")
@_router_options
@click.option("--post-switch-http", multiple=True, metavar="URL[,status=200]")
@_analysis_option("post-switch", "after the switch")
@click.option("--post-switch-window")
@click.option("--switch-timeout")
@click.option("--scale-down-delay")
@output_options
@click.pass_obj
def promote(
    obj: _Obj, /, app: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Switch APP to the colour awaiting promotion."""
    _run(obj, as_json, log_format, verbose, lambda c: _blue_green(c, app, params).promote(app), app)


@bluegreen.command("rollback")
@click.argument("app")
@_router_options
@click.option("--switch-timeout")
@click.option("--scale-down-delay")
@_deadline_options
@output_options
@click.pass_obj
def rollback(
    obj: _Obj, /, app: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Switch APP back to its standby colour (scaled up again if needed)."""
    _run(
        obj,
        as_json,
        log_format,
        verbose,
        lambda c: _blue_green(c, app, params).rollback(app),
        app,
        params,
    )


@bluegreen.command("status")
@click.argument("app")
@_router_options
@output_options
@click.pass_obj
def status(
    obj: _Obj, /, app: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Show APP's colours: which is active, under preview, scaling down when."""

    _run(obj, as_json, log_format, verbose, lambda c: _status(c, app, params, as_json), app)


def _status(controller: Controller, app: str, params: dict[str, Any], as_json: bool) -> Any:
    router = _status_router(controller, app, params)
    pair = read_pair(_stack_engine(controller), app)
    payload = _status_payload(pair, router.active() if router else None)
    if pair.lock:
        payload["lease"] = lease_state(
            _stack_engine(controller), pair.lock, controller.clock.now()
        )[0].value
    if as_json:
        return payload
    with _stdout():
        click.echo(f"{app}: active {payload['active']} (router: {payload['router']})")
        if remembered := pair.router:
            click.echo(f"  router of the last deploy: {remembered.router}")
        for view in pair.services.values():
            if view is not None:
                click.echo(f"  {view.name}: {view.image} x{view.replicas}")
        if payload["preview"]:
            click.echo(f"  awaiting promotion: {payload['preview']}")
        if payload["scale_down_at"]:
            click.echo(f"  the old colour scales down at {payload['scale_down_at']}")
        if pair.lock:
            click.echo(
                f"  locked by an operation in flight: {pair.lock} (lease {payload['lease']})"
            )
    raise SystemExit(0)


@bluegreen.command("watch")
@click.argument("app")
@click.option("--timeout", help="Stop watching after this long (exit 3; default: no limit).")
@output_options
@click.pass_obj
def watch(
    obj: _Obj, /, app: str, timeout: str | None, as_json: bool, log_format: str, verbose: int
) -> None:
    """Follow the blue-green operation in flight on APP (from any process)
    until it ends, through a promotion it awaits (and a scale-down its dead
    process left overdue); its result and exit code."""

    _run(obj, as_json, log_format, verbose, lambda c: _follow(c, app, timeout, as_json), app)


def _follow(controller: Controller, app: str, timeout: str | None, as_json: bool) -> Any:
    limit = parse_duration(timeout, "--timeout") if timeout else None  # bad: exit 2

    def say(line: str) -> None:
        if not as_json:
            click.echo(f"{app}: {line}", err=True)

    engine = _stack_engine(controller)
    router = None
    if read_pair(engine, app).router is not None:  # to take over an operation whose process died
        router = BlueGreen.remembered(app, controller).router
    return follow(engine, app, clock=controller.clock, timeout=limit, on_change=say, router=router)


#: For the top-level commands on a name that is both a service and an app:
#: the service's own command, besides ``bluegreen COMMAND``.
_SERVICE_COMMANDS = {
    "promote": "zdd-swarm canary promote",
    "rollback": "docker service rollback",
    "status": "docker service inspect",
    "watch": "zdd-swarm canary watch",
}


def is_pair(controller: Controller, name: str, command: str) -> bool:
    """Whether ``name`` is a blue-green app (its colour services carry the
    pair's labels) and no service is named so; ``InputError`` when it is both."""
    engine = _stack_engine(controller)
    colours = {colour.service(name) for colour in Colour}
    if not any(v.name in colours for v in engine.list_services({LABEL_APP: name})):
        return False
    try:
        engine.inspect_service(name)
    except ServiceNotFound:
        return True
    raise InputError(
        f"{name!r} is both a service and a blue-green app ({name}-blue, {name}-green): "
        f"`zdd-swarm bluegreen {command} {name}` for the app, "
        f"`{_SERVICE_COMMANDS[command]} {name}` for the service"
    )


def dispatch(
    controller: Controller, app: str, command: str, params: dict[str, Any], as_json: bool
) -> Any:
    """``zdd-swarm COMMAND APP`` for a blue-green app: ``bluegreen COMMAND APP``,
    through the router the pair remembers."""
    if command == "status":
        return _status(controller, app, params, as_json)
    if command == "watch":
        timeout = params.get("timeout")
        return _follow(controller, app, None if timeout == "auto" else timeout, as_json)
    blue_green = _blue_green(controller, app, params)
    return blue_green.promote(app) if command == "promote" else blue_green.rollback(app)


def _status_router(controller: Controller, app: str, params: dict[str, Any]) -> Router | None:
    """The router ``status`` asks (None: none given and none remembered)."""
    if (
        params.get("router_spec") is None
        and read_pair(_stack_engine(controller), app).router is None
    ):
        return None
    return _blue_green(controller, app, params).router


def _status_payload(pair: Pair, routed: Colour | None) -> dict[str, Any]:
    state = pair.state
    return {
        "app": pair.app,
        "active": state.active.value,
        "router": routed.value if routed else None,
        "preview": state.preview.value if state.preview else None,
        "scale_down_at": state.scale_down_at.isoformat() if state.scale_down_at else None,
        "lock": pair.lock,
        "lease": None,
        "router_spec": pair.router.router if pair.router else None,
        "last": last.to_dict() if (last := last_result(pair)) else None,
        "services": {
            colour.value: {"name": view.name, "image": view.image, "replicas": view.replicas}
            for colour, view in pair.services.items()
            if view is not None
        },
    }


cli.add_command(bluegreen)
