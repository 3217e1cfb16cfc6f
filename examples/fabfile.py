"""Fabric tasks: deploy, roll back and inspect a service on a remote swarm manager.

    pip install zdd_swarm fabric
    fab -r examples -H deploy@manager deploy --service web --image registry:5000/web:2
    fab -r examples -H deploy@manager status --service web
    fab -r examples -H deploy@manager rollback --service web

zdd_swarm runs here, on the machine that runs ``fab``, and reaches the
manager's Docker engine at ``ssh://USER@HOST:PORT`` taken from ``-H``: the
docker SDK opens its own SSH connection (paramiko) and runs ``docker system
dial-stdio`` on the manager, which connects to the manager's default engine.

The manager needs:

- an SSH server that accepts the user's key (no password prompt);
- the ``docker`` CLI on the user's ``PATH``;
- access to the engine: the user is root or in the ``docker`` group, and the
  SSH session's ``DOCKER_HOST`` (if set) names the engine of that manager.

Keys: the docker SDK does not see Fabric's ``-i`` or ``connect_kwargs``. It
reads ``~/.ssh/config`` (``HostName``, ``Port``, ``User``, ``IdentityFile``,
``ProxyCommand``), tries the agent and the default keys, and rejects a host
key that is not in ``~/.ssh/known_hosts`` (add it with ``ssh-keyscan -p PORT
HOST >> ~/.ssh/known_hosts``). An ``IdentityFile`` entry for the manager in
``~/.ssh/config`` serves both Fabric and the SDK.

Each task first runs ``docker version`` over Fabric's connection, so a
missing CLI or socket permission is named as such. ``deploy`` changes only
the image: the update policy is the service's own ``update_config`` (compose
``deploy.update_config``). ``rollback`` refuses when the last update was
already rolled back: Swarm's previous spec is then the release that failed.

Progress and the one-line outcome go to stdout, the library's warnings to
stderr. Exit codes are the rollout's: 0 completed, 1 rolled back, 3 halted,
4 rollback failed; 2 bad input (nothing changed), 5 engine or SSH unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import paramiko
from fabric import Connection, task
from invoke.context import Context
from invoke.exceptions import Exit

import zdd_swarm
from zdd_swarm import RolloutResult, events
from zdd_swarm.model import ServiceView, TaskState, TaskView, UpdateState

T = TypeVar("T")

EXIT_INPUT = 2
EXIT_ENGINE = 5
ROLLED_BACK = (
    UpdateState.ROLLBACK_STARTED,
    UpdateState.ROLLBACK_PAUSED,
    UpdateState.ROLLBACK_COMPLETED,
)

# the library's warnings and errors on stderr, one line each
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def docker_host(c: Context) -> str:
    """``ssh://user@host:port`` of the manager given with ``-H``, once its
    docker CLI has answered over Fabric's connection."""
    if not isinstance(c, Connection):
        raise Exit("name the swarm manager with -H user@host[:port]", code=EXIT_INPUT)
    host = f"[{c.host}]" if ":" in c.host else c.host
    where = f"{c.user}@{host}:{c.port}"
    try:
        probe = c.run(
            "docker version --format '{{.Server.Version}}'", hide=True, warn=True, in_stream=False
        )
    except (paramiko.SSHException, OSError) as exc:
        raise Exit(f"{where}: SSH failed: {exc}", code=EXIT_ENGINE) from exc
    if not probe.ok:
        lines = (probe.stderr or probe.stdout).strip().splitlines() or ["no output"]
        raise Exit(
            f"{where}: `docker version` failed (exit {probe.exited}): {lines[-1]}", code=EXIT_ENGINE
        )
    return f"ssh://{where}"


def engine_call(action: Callable[[], T]) -> T:
    """Run ``action``; the library's errors (and SSH errors of the docker SDK,
    which reach us unmapped) become the documented exit codes."""
    try:
        return action()
    except zdd_swarm.InputError as exc:
        raise Exit(f"nothing changed: {exc}", code=EXIT_INPUT) from exc
    except zdd_swarm.EngineError as exc:
        raise Exit(f"engine error: {exc}", code=EXIT_ENGINE) from exc
    except (paramiko.SSHException, OSError) as exc:
        raise Exit(
            f"SSH to the manager failed (docker SDK, see ~/.ssh/config and "
            f"~/.ssh/known_hosts): {type(exc).__name__}: {exc}",
            code=EXIT_ENGINE,
        ) from exc


def progress(event: events.Event) -> None:
    """A hook: one line per batch (the library logs failures as warnings)."""
    if isinstance(event, events.BatchStarted):
        print(
            f"{event.service}: {event.phase} batch {event.batch + 1}: "
            f"{'slot' if len(event.slots) == 1 else 'slots'} {', '.join(event.slots)}",
            flush=True,
        )


def finish(result: RolloutResult) -> None:
    print(result.summary(), flush=True)
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(
    help={
        "service": "the service to update",
        "image": "the new image reference",
        "task-deadline": "a new task not running (healthy) by then counts as failed",
    }
)
def deploy(c: Context, service: str, image: str, task_deadline: str = "60s") -> None:
    """Roll SERVICE out to IMAGE, rolled back automatically if the release is bad."""
    host = docker_host(c)
    finish(
        engine_call(
            lambda: zdd_swarm.update(
                service, image=image, host=host, task_deadline=task_deadline, hooks=[progress]
            )
        )
    )


@task(help={"service": "the service to roll back"})
def rollback(c: Context, service: str) -> None:
    """Roll SERVICE back to its previous spec and watch the rollback."""
    engine = zdd_swarm.DockerEngine(docker_host(c))
    try:
        view = engine_call(lambda: engine.inspect_service(service))
        if view.update_status and view.update_status.state in ROLLED_BACK:
            raise Exit(
                f"{view.name}: not rolling back: its last update was rolled back "
                f"({view.update_status.state.value}), so its previous spec is the "
                f"release that failed ({view.previous_image}); deploy the image you "
                f"want instead",
                code=EXIT_INPUT,
            )
        print(f"{view.name}: rolling back {view.image} -> {view.previous_image}", flush=True)
        controller = zdd_swarm.Controller(engine, hooks=[progress])
        result = engine_call(lambda: controller.rollback(service))
    finally:
        engine.close()
    finish(result)


@task(help={"service": "the service to show"})
def status(c: Context, service: str) -> None:
    """One line on SERVICE: image, running tasks, last update."""
    engine = zdd_swarm.DockerEngine(docker_host(c))
    try:
        view, tasks = engine_call(lambda: service_and_tasks(engine, service))
    finally:
        engine.close()
    wanted = [t for t in tasks if t.desired_state is TaskState.RUNNING]
    running = [t for t in wanted if t.running]
    others = sorted({t.image for t in running} - {view.image})
    update = view.update_status
    last = f"{update.state.value} ({update.message})" if update else "none"
    total = view.replicas if view.replicas is not None else len(wanted)
    print(
        f"{view.name}: {view.image} (version {view.version}), {len(running)}/{total} "
        f"running{f' (also {others})' if others else ''}; last update: {last}; "
        f"previous: {view.previous_image or 'none'}",
        flush=True,
    )


def service_and_tasks(engine: zdd_swarm.Engine, service: str) -> tuple[ServiceView, list[TaskView]]:
    view = engine.inspect_service(service)
    return view, engine.list_tasks(view.id)
