"""``zdd-swarm``: a thin shell over the library.

Parse, build the change and options, call ``Controller``,
map the outcome to an exit code:

==  ===========================================================
0   completed (or nothing to do)
1   rolled back: the release did not go out
2   invalid input: nothing was changed
3   paused, halted or superseded: a human is needed
4   the rollback failed
5   engine unreachable, an engine API error, or an unusable docker
    client setup (DOCKER_HOST, TLS files, config file, credential helper)
6   internal error: a bug in zdd-swarm (the traceback with -vv)
==  ===========================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import structlog
import yaml

from . import events
from ._logging import LOGGER_NAME, get_logger
from .canary import (
    Canary,
    CanaryOutcome,
    CanaryRecord,
    CanaryResult,
    CanarySpec,
    QueryContext,
    SetWeight,
    abort_canary,
    canary_from_compose,
    canary_status,
    follow_canary,
    load_canary_file,
    parse_steps,
    promote_canary,
    watch_canary,
)
from .clock import Clock
from .config import RollbackConfig, UpdateConfig, configs_from_compose
from .controller import Controller, RolloutOptions
from .display import PipeConsole, ProgressDisplay, render_result, stdout_to_devnull
from .engine import DockerEngine, Engine
from .errors import ConfigError, EngineError, InputError, ZddError
from .events import Event, Hook
from .gates import Gate, parse_http_gate, parse_tcp_gate
from .model import ServiceView, replicas_of
from .redact import mask_secrets, mask_values
from .result import RolloutResult
from .spec import ServiceChange
from .stack import StackResult

if TYPE_CHECKING:
    from .notify import WebhookNotifier

__all__ = ["main"]

EXIT_OK, EXIT_ROLLED_BACK, EXIT_INPUT, EXIT_HALTED, EXIT_ROLLBACK_FAILED, EXIT_ENGINE = range(6)
#: An exception the CLI did not expect: a bug. Never 1, which means "rolled back".
EXIT_INTERNAL = 6
F = TypeVar("F", bound=Callable[..., Any])
_CONFIG_FIELDS = ("parallelism", "delay", "order", "failure_action", "monitor", "max_failure_ratio")


class _Obj:
    """Per-invocation state; tests pass their own ``engine_factory`` and clock."""

    def __init__(
        self,
        host: str | None = None,
        engine_factory: Callable[[str | None], Engine] = DockerEngine,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self.engine_factory = engine_factory
        self.clock = clock


_LOG_HANDLER = "zdd-swarm-cli"


def configure_logging(fmt: str, level: int) -> None:
    """Send the library's log events (the stdlib logger ``zdd_swarm``) at
    ``level`` and above to stderr, rendered by structlog (the CLI's job,
    never the library's). Calling it again replaces the handler."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_LOG_HANDLER)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=pre_chain,
            processors=[
                *pre_chain,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _mask_log_values,
                *([structlog.processors.dict_tracebacks] if fmt == "json" else []),
                renderer,
            ],
        )
    )
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if h.get_name() == _LOG_HANDLER]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)


def _mask_log_values(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    """A structlog processor: no secret value reaches the log (``zdd_swarm.redact``)."""
    return {k: v if k == "exc_info" else mask_values(v) for k, v in event_dict.items()}


def output_options(fn: F) -> F:
    fn = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object on stdout instead of human output.",
    )(fn)
    fn = click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="Format of the event log on stderr.",
    )(fn)
    fn = click.option(
        "-v", "--verbose", count=True, help="Log more events on stderr (-v info, -vv debug)."
    )(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-H",
    "--host",
    envvar="DOCKER_HOST",
    default=None,
    help="Docker host of a swarm manager (default: $DOCKER_HOST, as the docker CLI).",
)
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """Safe Docker Swarm rolling updates: watched batch by batch, rolled back when bad."""
    if ctx.obj is None:
        ctx.obj = _Obj()
    ctx.obj.host = host


def _config_options(prefix: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        what = "update" if prefix == "update" else "rollback"
        doing = "updated" if prefix == "update" else "rolled back"
        actions = ["continue", "pause", "rollback"] if what == "update" else ["continue", "pause"]
        opts = [
            click.option(
                f"--{prefix}-parallelism", type=int, help=f"Tasks {doing} at once (0 = all)."
            ),
            click.option(f"--{prefix}-delay", help=f"Delay between {what}s (e.g. 10s)."),
            click.option(f"--{prefix}-order", type=click.Choice(["start-first", "stop-first"])),
            click.option(
                f"--{prefix}-failure-action",
                type=click.Choice(actions),
                help=f"Action on {what} failure.",
            ),
            click.option(f"--{prefix}-monitor", help="Time to watch each task after it starts."),
            click.option(
                f"--{prefix}-max-failure-ratio", type=float, help="Failure rate to tolerate (0..1)."
            ),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _config_flags(prefix: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f: params[f"{prefix}_{f}"]
        for f in _CONFIG_FIELDS
        if params.get(f"{prefix}_{f}") is not None
    }


class _KubernetesFlags:
    """``--max-surge``/``--max-unavailable``: a Deployment's rolling-update
    strategy, resolved against the service's replica count when the spec is
    built (so a bad value exits 2 before anything is sent). A flag left out
    takes Kubernetes' default, 25%. What Swarm cannot express is kept in
    ``warnings`` for the result."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.surge = params.get("max_surge")
        self.unavailable = params.get("max_unavailable")
        self.warnings: list[str] = []
        for flag in ("update_parallelism", "update_order"):
            if self and params.get(flag) is not None:
                raise ConfigError(
                    "--" + flag.replace("_", "-"),
                    params[flag],
                    "not together with --max-surge/--max-unavailable, which set it",
                )

    def __bool__(self) -> bool:
        return self.surge is not None or self.unavailable is not None

    def __call__(self, spec: dict[str, Any]) -> None:
        surge = "25%" if self.surge is None else self.surge
        unavailable = "25%" if self.unavailable is None else self.unavailable
        replicas = replicas_of(spec)
        if replicas is None and "%" in f"{surge}{unavailable}":
            raise ConfigError(
                "--max-surge/--max-unavailable",
                f"{surge}/{unavailable}",
                "task counts: the service is not replicated, so a percentage has no base",
            )
        mapped = UpdateConfig.from_kubernetes(surge, unavailable, replicas)
        current = UpdateConfig.from_api(spec.get("UpdateConfig"))
        spec["UpdateConfig"] = current.replace(
            parallelism=mapped.config.parallelism, order=mapped.config.order
        ).to_api()
        self.warnings = [str(w) for w in mapped.warnings]


def _compose_service(path: str, service: str) -> Mapping[str, Any]:
    """The entry of ``service`` (or of its name without the stack prefix) in
    the compose file at ``path``."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError("--compose", path, f"a readable compose file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("--compose", path, f"a YAML file ({exc})".replace("\n", " ")) from exc
    services = data.get("services") if isinstance(data, Mapping) else None
    if not isinstance(services, Mapping):
        raise ConfigError("--compose", path, "a compose file with a 'services' mapping")
    candidates = [service, service.partition("_")[2]]
    for name in candidates:
        if name and name in services:
            entry = services[name] or {}
            if not isinstance(entry, Mapping):
                raise ConfigError(f"services.{name}", entry, "a mapping")
            return entry
    raise ConfigError(
        "--compose",
        path,
        f"a compose file with a service named {service!r} "
        f"(it has: {', '.join(map(str, services)) or 'none'})",
    )


def _load_compose(path: str, service: str) -> tuple[str | None, UpdateConfig, RollbackConfig]:
    entry = _compose_service(path, service)
    update, rollback = configs_from_compose(entry)
    image = entry.get("image")
    return (str(image) if image else None), update, rollback


@contextlib.contextmanager
def _stdout() -> Iterator[None]:
    """Write to stdout; a broken pipe is not an error."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_to_devnull()


def _pipe_safe(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    def call(event: Any) -> None:
        with _stdout():
            hook(event)

    return call


def _emit_json(payload: Mapping[str, Any]) -> None:
    masked = mask_values(json.loads(json.dumps(payload, default=str)))
    with _stdout():
        click.echo(json.dumps(masked, indent=2))


def _result_payload(result: RolloutResult) -> dict[str, Any]:
    data = result.to_dict()
    data["service"] = result.service
    return data


class _Platform:
    """What ``--metrics-textfile``, ``--pushgateway`` and ``--notify-webhook``
    ask for: hooks for the rollout, and its metrics published at the end.
    Built before anything is sent, so a textfile that cannot be written is
    refused (exit 2) with the service untouched."""

    def __init__(self, service: str, params: Mapping[str, Any]) -> None:
        self.service = service
        self.textfile: str | None = params.get("metrics_textfile")
        self.pushgateway = params.get("pushgateway")
        self.notifiers: list[WebhookNotifier] = []
        if params.get("notify_webhook"):
            from .notify import WebhookNotifier  # urllib: imported only when asked for

            self.notifiers = [
                WebhookNotifier(
                    url,
                    format=params.get("notify_format") or "json",
                    timeout=params.get("notify_timeout") or 5.0,
                )
                for url in params["notify_webhook"]
            ]
        self.hooks: list[Hook] = list(self.notifiers)
        self.registry: Any = None
        self._textfile_failed: str | None = None
        if not (self.textfile or self.pushgateway):
            return
        try:
            from prometheus_client import CollectorRegistry

            from .metrics import PrometheusHook, check_textfile
        except ImportError as exc:
            flag = "--metrics-textfile" if self.textfile else "--pushgateway"
            raise ConfigError(
                flag, "", "the metrics extra: pip install 'zdd_swarm[metrics]'"
            ) from exc
        if self.textfile:
            check_textfile(self.textfile)
        self.registry = CollectorRegistry()
        self.hooks.append(PrometheusHook(self.registry))
        if self.textfile:
            self.hooks.append(self._write_textfile)

    def _write_textfile(self, event: Event) -> None:
        """A hook: the textfile follows the rollout's phase and batch as it goes."""
        if isinstance(event, (events.RolloutStarted, events.BatchStarted, events.RollbackStarted)):
            self._write_file()

    def _write_file(self) -> None:
        from .metrics import write_textfile

        assert self.textfile is not None
        try:
            write_textfile(self.textfile, self.registry)
        except OSError as exc:
            if self._textfile_failed is None:  # one warning
                self._textfile_failed = f"metrics not written to {self.textfile}: {exc}"
                get_logger("zdd_swarm.cli").warning(
                    "metrics_textfile_failed", path=self.textfile, error=str(exc)
                )

    def publish(self) -> list[str]:
        """Write the textfile and push to the gateway; warnings, never errors."""
        warnings: list[str] = []
        if self.textfile:
            self._write_file()
            warnings += [self._textfile_failed] if self._textfile_failed else []
        if self.pushgateway:
            from .metrics import push

            warning = push(self.pushgateway, self.registry, grouping_key={"service": self.service})
            warnings += [warning] if warning else []
        return warnings

    def close(self) -> None:
        """Wait for queued notifications: all webhooks together at most one timeout."""
        if not self.notifiers:
            return
        deadline = time.monotonic() + max(n.timeout for n in self.notifiers)
        for notifier in self.notifiers:
            notifier.close(max(0.0, deadline - time.monotonic()))


def _platform_options(fn: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--metrics-textfile",
                metavar="PATH",
                help="Write Prometheus metrics to PATH for node_exporter's textfile "
                "collector (a .prom file; needs the metrics extra).",
            ),
            click.option(
                "--pushgateway",
                metavar="URL",
                help="Push Prometheus metrics to this Pushgateway at the end "
                "(needs the metrics extra).",
            ),
            click.option(
                "--notify-webhook",
                multiple=True,
                metavar="URL",
                help="POST started, threshold, rollback and finished events to URL (repeatable).",
            ),
            click.option(
                "--notify-timeout",
                type=click.FloatRange(min=0.1),
                default=5.0,
                show_default=True,
                metavar="SECONDS",
                help="Limit of one webhook attempt; also the longest the exit waits for them.",
            ),
            click.option(
                "--notify-format",
                type=click.Choice(["json", "slack"]),
                default="json",
                show_default=True,
                help='Body of --notify-webhook: the event as JSON, or Slack\'s {"text": ...}.',
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def _run(
    obj: _Obj,
    as_json: bool,
    log_format: str,
    verbose: int,
    action: Callable[[Controller], Any],
    service: str,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Run one command, mapping every outcome and error to an exit code."""
    configure_logging(log_format, logging.WARNING - 10 * min(verbose, 2))
    display = None if as_json else ProgressDisplay()
    try:
        _run_action(obj, as_json, display, action, service, params or {})
    except Exception as exc:
        # a bug: one line (the traceback only with -vv) and an exit code of
        # its own, never 1 ("rolled back")
        if display:
            display.close()
        if verbose >= 2:
            traceback.print_exc(file=sys.stderr)
        lines = str(exc).strip().splitlines()
        why = f"internal error: {type(exc).__name__}" + (f": {lines[0]}" if lines else "")
        if verbose < 2:
            why += " (-vv shows the traceback)"
        _fail(as_json, service, "internal_error", RuntimeError(why), EXIT_INTERNAL, type(exc))


def _run_action(
    obj: _Obj,
    as_json: bool,
    display: ProgressDisplay | None,
    action: Callable[[Controller], Any],
    service: str,
    params: Mapping[str, Any],
) -> None:
    try:
        # checked before anything is sent: an unwritable --metrics-textfile exits 2
        platform = _Platform(service, params)
    except InputError as exc:
        _fail(as_json, service, "invalid_input", exc, EXIT_INPUT)
    try:
        _act(obj, as_json, display, action, service, platform)
    finally:
        # after the result is out: a slow webhook holds up only the exit,
        # and for at most its timeout
        platform.close()


def _act(
    obj: _Obj,
    as_json: bool,
    display: ProgressDisplay | None,
    action: Callable[[Controller], Any],
    service: str,
    platform: _Platform,
) -> None:
    hooks: list[Hook] = [_pipe_safe(display)] if display else []
    try:
        controller = Controller(
            obj.engine_factory(obj.host), hooks=hooks + platform.hooks, clock=obj.clock
        )
        outcome = action(controller)
    except KeyboardInterrupt:
        if display:
            display.close()
        hint = (
            f"stopped watching; the engine's update of {service!r} goes on.\n"
            f"  attach again: zdd-swarm watch {service}\n"
            f"  roll back:    zdd-swarm rollback {service}"
        )
        if as_json:
            _emit_json(
                {"outcome": "detached", "code": "interrupted", "reason": hint, "service": service}
            )
        else:
            click.echo(hint, err=True)
        sys.exit(EXIT_HALTED)
    except InputError as exc:
        _fail(as_json, service, "invalid_input", exc, EXIT_INPUT)
    except EngineError as exc:
        _fail(as_json, service, "engine_error", exc, EXIT_ENGINE)
    except ZddError as exc:  # pragma: no cover - every ZddError is one of the above
        _fail(as_json, service, "error", exc, EXIT_ENGINE)
    if isinstance(outcome, CanaryResult):
        platform.publish()
        _exit_canary(outcome, as_json)
    if isinstance(outcome, StackResult):
        platform.publish()
        if as_json:
            _emit_json(outcome.to_dict())
        else:
            with _stdout():
                _print_stack_result(outcome)
        sys.exit(outcome.exit_code)
    if isinstance(outcome, RolloutResult):
        outcome.warnings += platform.publish()
        if as_json:
            _emit_json(_result_payload(outcome))
        else:
            with _stdout():
                render_result(outcome, PipeConsole(highlight=False))
        sys.exit(outcome.exit_code)
    if callable(getattr(outcome, "summary", None)) and hasattr(outcome, "exit_code"):
        # a result of its own kind (bluegreen): one line, or its JSON
        if as_json:
            _emit_json(outcome.to_dict())
        else:
            with _stdout():
                click.echo(outcome.summary())
        sys.exit(outcome.exit_code)
    if as_json:
        _emit_json(outcome)
    sys.exit(EXIT_OK)


def _fail(
    as_json: bool,
    service: str,
    code: str,
    exc: Exception,
    exit_code: int,
    kind: type[BaseException] | None = None,
) -> None:
    if as_json:
        _emit_json(
            {
                "outcome": "error",
                "code": code,
                "reason": str(exc),
                "service": service,
                "error": (kind or type(exc)).__name__,
            }
        )
    else:
        click.echo(f"zdd-swarm: error: {mask_secrets(str(exc))}", err=True)
    sys.exit(exit_code)


def _options(params: Mapping[str, Any], failure_action: str | None) -> RolloutOptions:
    gates: list[Gate] = [parse_http_gate(g) for g in params.get("gate_http") or ()]
    gates += [parse_tcp_gate(g) for g in params.get("gate_tcp") or ()]
    kwargs: dict[str, Any] = {"gates": tuple(gates)}
    for name in ("task_deadline", "progress_deadline", "timeout", "rollback_timeout"):
        if params.get(name) is not None:
            kwargs[name] = params[name]
    if failure_action is not None:
        kwargs["failure_action"] = failure_action
    return RolloutOptions(**kwargs)


def _deadline_options(fn: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--task-deadline", help="A new task not RUNNING within this fails (default 120s)."
            ),
            click.option(
                "--progress-deadline",
                help=(
                    "A stall: no task reached RUNNING for this long beyond the engine's "
                    "delay and monitor (default 300s)."
                ),
            ),
            click.option(
                "--timeout", help="Overall limit of the update (default auto: 3x expected, >= 30m)."
            ),
            click.option(
                "--rollback-timeout", help="Limit of a rollback (default auto: 3x expected, >= 5m)."
            ),
        ]
    ):
        fn = opt(fn)
    return fn


@cli.command()
@click.argument("service")
@click.option("--image", help="New image reference.")
@click.option(
    "--pin-digest/--no-pin-digest",
    default=False,
    help="Resolve the image to its registry digest and pin it.",
)
@click.option("--env-add", multiple=True, metavar="K=V", help="Add or update an env variable.")
@click.option("--env-rm", multiple=True, metavar="K", help="Remove an env variable.")
@click.option("--label-add", multiple=True, metavar="K=V", help="Add or update a service label.")
@click.option("--label-rm", multiple=True, metavar="K", help="Remove a service label.")
@click.option("--force", is_flag=True, help="Redeploy even if nothing changed.")
@_config_options("update")
@click.option(
    "--max-surge",
    metavar="N|N%",
    help="Kubernetes' maxSurge (default 25%): sets --update-order and --update-parallelism.",
)
@click.option(
    "--max-unavailable",
    metavar="N|N%",
    help="Kubernetes' maxUnavailable (default 25%); see docs/progressive-delivery.md.",
)
@_config_options("rollback")
@_deadline_options
@click.option(
    "--gate-http",
    multiple=True,
    metavar="URL[,status=N][,ratio=R][,timeout=S]",
    help="HTTP check run through each batch's monitor window (repeatable).",
)
@click.option("--gate-tcp", multiple=True, metavar="HOST:PORT", help="TCP check (repeatable).")
@click.option(
    "--compose",
    "compose_file",
    type=click.Path(dir_okay=False),
    help="Take image and deploy.update_config/rollback_config from this compose "
    "file's service of the same name (flags win).",
)
@click.option(
    "--step",
    multiple=True,
    metavar="STEP",
    help="A canary step: 10%, 3 (tasks), pause=2m, analysis=NAME (repeatable, in order; "
    "see docs/progressive-delivery.md).",
)
@click.option(
    "--steps-file",
    type=click.Path(dir_okay=False),
    help="A canary file: its steps, and the analyses they name (--step replaces its steps).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@_platform_options
@output_options
@click.pass_obj
def update(
    obj: _Obj, /, service: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Update SERVICE and follow the rollout; roll back if it goes bad."""

    def action(controller: Controller) -> Any:
        change, kubernetes = _update_change(service, params)
        # Only the flag changes what *we* do on failure (default: roll back); a
        # compose file's failure_action is Swarm's own, in the spec.
        options = _options(params, params["update_failure_action"])
        canary = _canary_spec(params, service)
        if params["dry_run"]:
            plan = controller.plan(service, change)
            plan.warnings.extend(kubernetes.warnings)
            steps = _canary_plan(canary, plan) if canary is not None else []
            if as_json:
                return {**_plan_payload(plan), **({"canary_steps": steps} if steps else {})}
            with _stdout():
                _print_plan(plan, steps)
            sys.exit(EXIT_OK)
        if canary is not None:
            engine = _stack_engine(controller)
            return Canary(engine, canary, clock=controller.clock, hooks=controller.hooks).run(
                service, change
            )
        result = controller.update(service, change, options)
        result.warnings.extend(kubernetes.warnings)
        return result

    _run(obj, as_json, log_format, verbose, action, service, params)


def _update_change(
    service: str, params: Mapping[str, Any]
) -> tuple[ServiceChange, _KubernetesFlags]:
    """The change `update` asks for: flags over a compose file's service
    over the current spec. Refused before anything is sent if it is none."""
    image = params["image"]
    update_cfg: UpdateConfig | None = None
    rollback_cfg: RollbackConfig | None = None
    if params["compose_file"]:
        compose_image, update_cfg, rollback_cfg = _load_compose(params["compose_file"], service)
        image = image or compose_image
    update_flags = _config_flags("update", params)
    rollback_flags = _config_flags("rollback", params)
    kubernetes = _KubernetesFlags(params)
    # validate the flags now, before anything is sent
    UpdateConfig(**update_flags)
    RollbackConfig(**rollback_flags)
    if update_cfg is not None:
        update_cfg = update_cfg.replace(**update_flags)
    if rollback_cfg is not None:
        rollback_cfg = rollback_cfg.replace(**rollback_flags)

    def merge_flags(spec: dict[str, Any]) -> None:
        if update_cfg is None and update_flags:
            current = UpdateConfig.from_api(spec.get("UpdateConfig"))
            spec["UpdateConfig"] = current.replace(**update_flags).to_api()
        if rollback_cfg is None and rollback_flags:
            previous = RollbackConfig.from_api(spec.get("RollbackConfig"))
            spec["RollbackConfig"] = previous.replace(**rollback_flags).to_api()
        if kubernetes:
            kubernetes(spec)

    change = ServiceChange(
        image=image,
        pin_digest=params["pin_digest"],
        env_add=params["env_add"],
        env_rm=params["env_rm"],
        labels_add=params["label_add"],
        labels_rm=params["label_rm"],
        force=params["force"],
        update_config=update_cfg,
        rollback_config=rollback_cfg,
        patch=merge_flags if (update_flags or rollback_flags or kubernetes) else None,
    )
    flags = (change.env_add, change.env_rm, change.labels_add, change.labels_rm, change.force)
    if not (image or any(flags) or update_flags or rollback_flags or update_cfg or kubernetes):
        raise ConfigError(
            "update",
            service,
            "at least one change (--image, --env-add, --label-add, --force, --update-*, ...)",
        )
    return change, kubernetes


_NOT_WITH_CANARY = (
    "gate_http",
    "gate_tcp",
    "task_deadline",
    "progress_deadline",
    "timeout",
    "rollback_timeout",
)


def _canary_spec(params: Mapping[str, Any], service: str) -> CanarySpec | None:
    """The canary asked for: ``--step``s, a ``--steps-file`` (steps and
    analyses), or the ``--compose`` service's ``x-zdd-swarm``; None if none."""
    base: CanarySpec | None = None
    if params.get("steps_file"):
        base = load_canary_file(params["steps_file"])
    elif params.get("compose_file"):
        base = canary_from_compose(_compose_service(params["compose_file"], service))
    if params.get("step"):
        analyses = base.analyses if base is not None else {}
        source = dict(base.source or {}) if base is not None else {}
        source["steps"] = list(params["step"])
        base = CanarySpec(parse_steps(params["step"], analyses), analyses, source)
    if base is not None:
        for name in _NOT_WITH_CANARY:
            if params.get(name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(flag, params[name], "not with a canary (--step) yet")
    return base


def _exit_canary(result: CanaryResult, as_json: bool) -> None:
    """Print a canary's result and exit: 0 completed, 1 aborted, 4 the
    abort failed, 3 another controller took it over."""
    steps = [{"index": r.index, "step": r.step, "detail": r.detail} for r in result.steps]
    if as_json:
        _emit_json(
            {
                "outcome": result.outcome.value,
                "code": f"canary_{result.outcome.value}",
                "reason": result.reason,
                "service": result.service,
                "failed_step": result.failed_step,
                "steps": steps,
            }
        )
    else:
        with _stdout():
            outcome = result.outcome.value.replace("_", " ")
            click.echo(f"{result.service}: canary {outcome}: {result.reason}")
            for step in steps:
                click.echo(f"  step {step['index']} {step['step']}: {step['detail']}")
    codes = {
        CanaryOutcome.COMPLETED: EXIT_OK,
        CanaryOutcome.ROLLED_BACK: EXIT_ROLLED_BACK,
        CanaryOutcome.ROLLBACK_FAILED: EXIT_ROLLBACK_FAILED,
        CanaryOutcome.HANDED_OVER: EXIT_HALTED,
    }
    sys.exit(codes[result.outcome])


def _plan_payload(plan: Any) -> dict[str, Any]:
    return {
        "outcome": "planned",
        "code": "dry_run",
        "reason": "nothing was changed (--dry-run)",
        "service": plan.service,
        "image_before": plan.image_before,
        "image_after": plan.image_after,
        "changes": plan.changed,
        "total": plan.total,
        "batches": plan.batches,
        "update_config": plan.update_config.to_compose(),
        "estimated_seconds": plan.estimated_seconds,
        "rollback_seconds": plan.rollback_seconds,
        "warnings": plan.warnings,
    }


def _canary_plan(canary: CanarySpec, plan: Any) -> list[str]:
    """The canary's steps as they would go on this service, checked as
    ``Canary.run`` checks them (the replica count, a first measurement of
    every analysis): ``10% (1 of 10 tasks)``, ``analysis errors``, ..."""
    canary.check(plan.total, QueryContext(plan.service, plan.image_before, plan.image_after))
    return [
        f"{step} ({step.task_count(plan.total)} of {plan.total} tasks)"
        if isinstance(step, SetWeight)
        else str(step)
        for step in canary.steps
    ]


def _print_plan(plan: Any, canary_steps: Sequence[str] = ()) -> None:
    if plan.noop:
        click.echo(f"{plan.service}: nothing to change")
    else:
        click.echo(f"{plan.service}: would change {', '.join(plan.changed)}")
        click.echo(f"  image: {plan.image_before} -> {plan.image_after}")
        cfg = plan.update_config
        click.echo(
            f"  {plan.total} tasks in {plan.batches} batches (parallelism "
            f"{cfg.parallelism or 'all'}, {cfg.order.value}, delay "
            f"{cfg.delay.total_seconds():g}s, monitor {cfg.monitor.total_seconds():g}s)"
        )
        click.echo(
            f"  estimated duration: about {plan.estimated_seconds:.0f}s"
            f" (a rollback: about {plan.rollback_seconds:.0f}s)"
        )
    if canary_steps:
        click.echo(f"  as a canary: {', '.join(canary_steps)}")
    for warning in plan.warnings:
        click.echo(f"  warning: {warning}")
    click.echo("  nothing was changed (--dry-run)")


@cli.command()
@click.argument("service")
@_deadline_options
@click.option(
    "--failure-action",
    type=click.Choice(["continue", "pause", "rollback"]),
    help="What to do when a threshold is crossed (default rollback).",
)
@_platform_options
@output_options
@click.pass_obj
def watch(
    obj: _Obj, /, service: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Attach to an update of SERVICE in progress and follow it to its outcome
    (a canary in flight: until it ends, taking it over if its controller dies;
    a blue-green app: as `bluegreen watch`)."""

    def action(controller: Controller) -> Any:
        if _is_blue_green(controller, service, "watch"):
            return _blue_green(controller, service, "watch", params, as_json)
        engine = _stack_engine(controller)
        if canary_status(engine, service) is not None:
            _exit_canary(follow_canary(engine, service, clock=controller.clock), as_json)
        return controller.watch(service, _options(params, params["failure_action"]))

    _run(obj, as_json, log_format, verbose, action, service, params)


@cli.command()
@click.argument("service")
@click.option(
    "--rollback-timeout", help="Limit of the rollback (default auto: 3x expected, >= 5m)."
)
@_platform_options
@output_options
@click.pass_obj
def rollback(
    obj: _Obj, /, service: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Roll SERVICE back to its previous spec and watch the rollback (a canary
    in flight: abort it, every task back on the spec from before it; a
    blue-green app: switch back, as `bluegreen rollback`)."""

    def action(controller: Controller) -> Any:
        if _is_blue_green(controller, service, "rollback"):
            return _blue_green(controller, service, "rollback", params, as_json)
        if canary_status(_stack_engine(controller), service) is not None:
            return _abort(controller, service, 30.0, as_json)
        return controller.rollback(service, _options(params, None))

    _run(obj, as_json, log_format, verbose, action, service, params)


@cli.command()
@click.argument("service")
@output_options
@click.pass_obj
def status(obj: _Obj, service: str, as_json: bool, log_format: str, verbose: int) -> None:
    """Show SERVICE: spec, update status, tasks per node, last rollout outcome
    (a blue-green app: as `bluegreen status`)."""

    def action(controller: Controller) -> Any:
        if _is_blue_green(controller, service, "status"):
            return _blue_green(controller, service, "status", {}, as_json)
        view = controller._prepare(service)
        payload = _status_payload(controller, view)
        if not as_json:
            with _stdout():
                _print_status(payload)
            sys.exit(EXIT_OK)
        return payload

    _run(obj, as_json, log_format, verbose, action, service)


_LAST_OUTCOME = {
    "completed": "completed",
    "rollback_completed": "rolled_back",
    "paused": "paused",
    "rollback_paused": "rollback_failed",
    "updating": "in_progress",
    "rollback_started": "rolling_back",
}


def _status_payload(controller: Controller, view: ServiceView) -> dict[str, Any]:
    tasks = controller.engine.list_tasks(view.id)
    nodes = {n.id: n.hostname for n in controller.engine.list_nodes()}
    per_node: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.desired_state.value != "running" and not task.running:
            continue
        per_node.setdefault(nodes.get(task.node_id, task.node_id[:12] or "unassigned"), []).append(
            {"id": task.id, "state": task.state.value, "image": task.image, "error": task.error}
        )
    status = view.update_status
    return {
        "outcome": "status",
        "code": "status",
        "reason": "",
        "service": view.name,
        "image": view.image,
        "version": view.version,
        "replicas": view.replicas,
        "update_config": UpdateConfig.from_api(view.spec.get("UpdateConfig")).to_compose(),
        "rollback_config": RollbackConfig.from_api(view.spec.get("RollbackConfig")).to_compose(),
        "update_status": None
        if status is None
        else {
            "state": status.state.value,
            "message": status.message,
            "started_at": status.started_at,
            "completed_at": status.completed_at,
        },
        "last_rollout": _LAST_OUTCOME.get(status.state.value) if status else None,
        "canary": _record_payload(view.name, record)
        if (record := canary_status(_stack_engine(controller), view.name))
        else None,
        "tasks": per_node,
    }


def _print_status(payload: Mapping[str, Any]) -> None:
    click.echo(
        f"{payload['service']}: {payload['image']} (version {payload['version']}, "
        f"replicas {payload['replicas']})"
    )
    status = payload["update_status"]
    if status:
        click.echo(f"  last rollout: {payload['last_rollout']} ({status['message']})")
    else:
        click.echo("  last rollout: none")
    if payload.get("canary"):
        click.echo(f"  canary: {payload['canary']['status']}")
    configs = {key: payload[key] for key in ("update_config", "rollback_config")}
    # the compose form, as under a service's deploy: key
    for line in yaml.safe_dump(configs, sort_keys=False).splitlines():
        click.echo(f"  {line}")
    if payload["tasks"]:
        click.echo("  tasks:")
    for node, tasks in sorted(payload["tasks"].items()):
        for task in tasks:
            error = f" ({task['error']})" if task["error"] else ""
            click.echo(
                f"    {node:<12} {task['id'][:12]} {task['state']:<9} {task['image']}{error}"
            )


@cli.group("canary")
def canary_group() -> None:
    """A canary in flight on a service, from any process: status, promote,
    abort, watch."""


_STALE_AFTER = click.option(
    "--stale-after",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds without a heartbeat after which another process may take the canary over.",
)


def _record_payload(service: str, record: CanaryRecord | None) -> dict[str, Any]:
    if record is None:
        return {"service": service, "canary": None, "status": "no canary in flight"}
    return {
        "service": service,
        "status": record.describe(),
        "step": record.step,
        "total": record.total,
        "steps": list(record.steps),
        "phase": record.phase.value,
        "released": record.released,
        "replicas": record.replicas,
        "new_image": record.new_image,
        "owner": record.owner,
        "heartbeat": record.heartbeat,
        "analyses": list(record.analyses),
    }


@canary_group.command("status")
@click.argument("service")
@output_options
@click.pass_obj
def canary_status_cmd(
    obj: _Obj, service: str, as_json: bool, log_format: str, verbose: int
) -> None:
    """Where the canary on SERVICE stands: step 2 of 5 (25%), paused for approval."""

    def action(controller: Controller) -> Any:
        payload = _record_payload(service, canary_status(_stack_engine(controller), service))
        if not as_json:
            with _stdout():
                click.echo(f"{service}: {payload['status']}")
            sys.exit(EXIT_OK)
        return payload

    _run(obj, as_json, log_format, verbose, action, service)


@canary_group.command("promote")
@click.argument("service")
@output_options
@click.pass_obj
def canary_promote(obj: _Obj, service: str, as_json: bool, log_format: str, verbose: int) -> None:
    """End the pause the canary on SERVICE waits in (exit 2 if none)."""

    _run(obj, as_json, log_format, verbose, lambda c: _promote(c, service, as_json), service)


def _promote(controller: Controller, service: str, as_json: bool) -> Any:
    """End the canary's pause on ``service`` (``canary promote``, ``promote``)."""
    record = promote_canary(_stack_engine(controller), service, clock=controller.clock)
    if not as_json:
        with _stdout():
            click.echo(f"{service}: promote requested at {record.describe()}")
        sys.exit(EXIT_OK)
    return {"service": service, "outcome": "promote_requested", "step": record.step}


@cli.command("promote")
@click.argument("service")
@output_options
@click.pass_obj
def promote(obj: _Obj, service: str, as_json: bool, log_format: str, verbose: int) -> None:
    """End the pause of the canary on SERVICE (as `canary promote`); a
    blue-green app: switch to its colour awaiting promotion (`bluegreen promote`)."""

    def action(controller: Controller) -> Any:
        if _is_blue_green(controller, service, "promote"):
            return _blue_green(controller, service, "promote", {}, as_json)
        return _promote(controller, service, as_json)

    _run(obj, as_json, log_format, verbose, action, service)


@canary_group.command("abort")
@click.argument("service")
@_STALE_AFTER
@output_options
@click.pass_obj
def canary_abort(
    obj: _Obj, service: str, stale_after: float, as_json: bool, log_format: str, verbose: int
) -> None:
    """Abort the canary on SERVICE: every task back on the original spec. Its
    controller does it; if it is gone, this process does and waits."""

    _run(
        obj,
        as_json,
        log_format,
        verbose,
        lambda c: _abort(c, service, stale_after, as_json),
        service,
    )


# `zdd-swarm abort SERVICE` is `zdd-swarm canary abort SERVICE`
cli.add_command(canary_abort, "abort")


def _abort(controller: Controller, service: str, stale_after: float, as_json: bool) -> Any:
    """Abort the canary on ``service`` (``canary abort``, ``abort``, ``rollback``)."""
    engine = _stack_engine(controller)
    result = abort_canary(engine, service, clock=controller.clock, stale_after=stale_after)
    if result is not None:
        _exit_canary(result, as_json)
    if not as_json:
        with _stdout():
            click.echo(f"{service}: abort requested; its controller restores the original")
        sys.exit(EXIT_OK)
    return {"service": service, "outcome": "abort_requested"}


@canary_group.command("watch")
@click.argument("service")
@click.option(
    "--steps-file",
    type=click.Path(dir_okay=False),
    help="The canary file, when the record has no analyses (web metrics with headers).",
)
@_STALE_AFTER
@output_options
@click.pass_obj
def canary_watch(
    obj: _Obj,
    service: str,
    steps_file: str | None,
    stale_after: float,
    as_json: bool,
    log_format: str,
    verbose: int,
) -> None:
    """Finish the canary on SERVICE after its controller died (no heartbeat
    for --stale-after seconds), from the step it was at."""

    def action(controller: Controller) -> Any:
        spec = load_canary_file(steps_file) if steps_file else None
        engine = _stack_engine(controller)
        result = watch_canary(
            engine, service, spec, clock=controller.clock, stale_after=stale_after
        )
        _exit_canary(result, as_json)

    _run(obj, as_json, log_format, verbose, action, service)


def _is_blue_green(controller: Controller, name: str, command: str) -> bool:
    """Whether NAME is a blue-green app and no service (exit 2 when it is both)."""
    from .bluegreen.cli import is_pair  # not at the top: bluegreen.cli imports this module

    return is_pair(controller, name, command)


def _blue_green(
    controller: Controller, app: str, command: str, params: dict[str, Any], as_json: bool
) -> Any:
    """``zdd-swarm COMMAND APP`` on a blue-green app: ``bluegreen COMMAND APP``."""
    from .bluegreen.cli import dispatch

    return dispatch(controller, app, command, params, as_json)


def _stack_engine(controller: Controller) -> Any:
    """The engine, which keeps configs too (DockerEngine, FakeEngine)."""
    return controller.engine


@cli.group()
def stack() -> None:
    """Whole stacks: a compose file deployed in waves, to one verdict."""


def _print_stack_result(result: StackResult) -> None:
    click.echo(f"stack {result.stack}: {result.outcome.value} in {result.duration_s:.1f}s")
    for report in result.services:
        why = f" ({report.reason})" if report.reason else ""
        click.echo(f"  wave {report.wave} {report.service}: {report.outcome}{why}")
    if result.not_put_back:
        click.echo(f"  not put back: {', '.join(result.not_put_back)}")
    click.echo(f"  {result.reason}")


@stack.command("deploy")
@click.argument("stack_name", metavar="STACK")
@click.option(
    "-c",
    "--compose-file",
    "compose_files",
    multiple=True,
    required=True,
    help="Compose file (repeatable; later files override earlier ones, as with docker).",
)
@click.option(
    "--resolve-image",
    type=click.Choice(["always", "changed", "never"]),
    default="never",
    show_default=True,
    help="Pin images to their registry digest: always, only changed images, or never "
    "(the images as the compose files name them; docker's default is always).",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Remove the stack's services the compose files no longer name, once every change landed.",
)
@click.option(
    "--with-registry-auth",
    is_flag=True,
    help="Accepted for compatibility: the registry credentials are always sent.",
)
@_config_options("update")
@_config_options("rollback")
@_deadline_options
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@_platform_options
@output_options
@click.pass_obj
def stack_deploy(
    obj: _Obj, /, stack_name: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Deploy compose files as STACK: changed services roll wave by wave (depends_on);
    if one fails, everything this deploy changed is put back."""
    from .stack import deploy_stack, plan_stack

    def action(controller: Controller) -> Any:
        update_flags = _config_flags("update", params)
        rollback_flags = _config_flags("rollback", params)
        update_cfg = UpdateConfig(**update_flags) if update_flags else None
        rollback_cfg = RollbackConfig(**rollback_flags) if rollback_flags else None
        engine: Any = controller.engine
        if params["dry_run"]:
            plan = plan_stack(
                params["compose_files"],
                stack_name,
                engine=engine,
                update_config=update_cfg,
                rollback_config=rollback_cfg,
                resolve_image=params["resolve_image"],
                prune=params["prune"],
            )
            if not as_json:
                with _stdout():
                    click.echo("\n".join(plan.lines()))
                sys.exit(EXIT_OK)
            return {
                "outcome": "plan",
                "stack": stack_name,
                "estimated_seconds": plan.estimated_seconds,
                "create": [f"{o.kind} {o.name}" for o in plan.create_objects],
                "services": [
                    {
                        "service": r.service,
                        "action": r.action.value,
                        "wave": r.wave,
                        "changed": r.changed,
                    }
                    for r in plan.services
                ],
            }
        return deploy_stack(
            params["compose_files"],
            stack_name,
            engine=engine,
            controller=controller,
            options=_options(params, None),
            update_config=update_cfg,
            rollback_config=rollback_cfg,
            resolve_image=params["resolve_image"],
            prune=params["prune"],
        )

    _run(obj, as_json, log_format, verbose, action, stack_name, params)


@stack.command("watch")
@click.argument("stack_name", metavar="STACK")
@_deadline_options
@output_options
@click.pass_obj
def stack_watch(
    obj: _Obj, /, stack_name: str, as_json: bool, log_format: str, verbose: int, **params: Any
) -> None:
    """Finish the deploy of STACK in flight (its process died): watch the services
    that were rolling; put everything back unless the deploy had landed."""
    from .stack import watch_stack

    def action(controller: Controller) -> Any:
        engine: Any = controller.engine
        return watch_stack(
            stack_name, engine=engine, controller=controller, options=_options(params, None)
        )

    _run(obj, as_json, log_format, verbose, action, stack_name, params)


# Strategies with a command group of their own register it when their module
# is imported; importing it here makes `zdd-swarm bluegreen ...` exist, in
# whichever order the two modules are first imported.
from .bluegreen import cli as _bluegreen_cli  # noqa: E402, F401


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``zdd-swarm``; usage errors exit 2 (click's own)."""
    cli.main(args=argv, prog_name="zdd-swarm")
