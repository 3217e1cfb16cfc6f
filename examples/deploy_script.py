"""A deploy script: roll out one image and post the outcome.

    DOCKER_HOST=ssh://deploy@manager python examples/deploy_script.py web registry:5000/web:2

The "post" here prints; swap ``post_outcome`` for your chat or incident hook.
Exit code: the rollout's (0 completed, 1 rolled back, 3 halted, 4 rollback
failed; 2 bad input, 5 engine unreachable).
"""

from __future__ import annotations

import argparse
import logging
import sys

import zdd_swarm
from zdd_swarm import UpdateConfig, events


def post_outcome(event: events.Event) -> None:
    """A hook: called with every event; acts on the final one."""
    if isinstance(event, events.RolloutFinished):
        print(
            f"[notify] {event.service}: {event.outcome} ({event.code}) after "
            f"{event.elapsed:.0f}s: {event.reason}",
            flush=True,
        )
    elif isinstance(event, events.RollbackStarted):
        print(f"[notify] {event.service}: rolling back ({event.reason})", flush=True)


def quiet_logging() -> None:
    """The library logs through the stdlib logger ``zdd_swarm`` and never
    configures it; an application does. Here: warnings and errors only, on
    stderr, one line each (docs/logging.md shows JSON)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service")
    parser.add_argument("image")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--task-deadline", default="60s")
    args = parser.parse_args()
    quiet_logging()
    try:
        result = zdd_swarm.update(
            args.service,
            image=args.image,
            update_config=UpdateConfig(
                parallelism=args.parallelism, order="start-first", monitor="3s"
            ),
            task_deadline=args.task_deadline,
            hooks=[post_outcome],
        )
    except zdd_swarm.InputError as exc:
        print(f"[notify] not deployed, bad input: {exc}", file=sys.stderr)
        return 2
    except zdd_swarm.EngineError as exc:
        print(f"[notify] not deployed, engine error: {exc}", file=sys.stderr)
        return 5
    print(result.summary())
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
