"""Deploy examples/stack as one stack, to one verdict (the tests run it).

    WEB_IMAGE=registry:5000/web:2 python examples/stack_deploy.py shop

Every service whose spec changed rolls wave by wave (``depends_on``); if one
fails, everything this deploy changed is put back. The exit code is the
CLI's: 0 landed, 1 put back, 4 something could not be put back.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from zdd_swarm import Controller, RolloutOptions, StackResult
from zdd_swarm.engine import StackEngine
from zdd_swarm.stack import deploy_stack

STACK_DIR = Path(__file__).with_name("stack")


def deploy(
    stack: str,
    *,
    overrides: Sequence[Path] = (),
    engine: StackEngine | None = None,
    controller: Controller | None = None,
    environment: Mapping[str, str] | None = None,
) -> StackResult:
    """examples/stack/compose.yml (and ``overrides``) as ``stack``."""
    result = deploy_stack(
        [STACK_DIR / "compose.yml", *overrides],
        stack,
        engine=engine,
        controller=controller,
        options=RolloutOptions(task_deadline="60s"),
        environment=environment,
    )
    for report in result.services:
        print(f"wave {report.wave} {report.service}: {report.action.value} -> {report.outcome}")
    print(result.summary())
    if result.not_put_back:
        print(f"NOT put back, look at: {', '.join(result.not_put_back)}", file=sys.stderr)
    return result


def main(argv: Sequence[str]) -> int:
    if len(argv) < 1:
        print("usage: stack_deploy.py STACK [OVERRIDE.yml ...]", file=sys.stderr)
        return 2
    return deploy(argv[0], overrides=[Path(p) for p in argv[1:]]).exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
