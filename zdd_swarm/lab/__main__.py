"""``python -m zdd_swarm.lab``: bring the local swarm lab up, take it down,
look at it, lose and restore a node, or print its environment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._engines import DEFAULT_ENGINE
from ._lab import Lab
from .errors import LabError

EPILOG = """\
commands:
  up [--nodes N] [--engine E] [--with prometheus]
                   bring the lab up (idempotent; repairs what is broken);
                   E: 28.5 (default), 26.1, 20.10 or a folder with dockerd,
                   for every node, or one per node: 28.5,20.10,26.1 (node 1
                   is the manager); default $ZDD_LAB_ENGINE, else 28.5;
                   --with prometheus also starts the lab's Prometheus (it
                   scrapes services labelled prometheus.scrape=true) and
                   prints the URL of its HTTP API
  down [--purge]   remove daemons, namespaces, bridge, iptables rules, mounts;
                   --purge also deletes the registry storage and image stamp
  status           what is up; exit 0 if the lab is fully up, 1 if not
  kill-node I      SIGKILL every process of node I (a lost machine)
  start-node I     start node I's dockerd again; it rejoins the swarm
  stop-registry    stop the registry (pulls fail; images on the nodes still run)
  start-registry   start the registry again
  env              print export lines (eval "$(python -m zdd_swarm.lab env)")

exit status: 0 ok, 1 the lab reported an error (one line on stderr), 2 usage
"""


def _say(message: str) -> None:
    print(f"zdd-lab: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zdd_swarm.lab",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress messages"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="bring the lab up", parents=[common])
    up.add_argument(
        "--nodes", type=int, default=None, help="number of nodes (default: as last time, else 3)"
    )
    up.add_argument(
        "--engine",
        default=None,
        metavar="E[,E...]",
        help=(
            "engine of every node, or one per node "
            f"(default: $ZDD_LAB_ENGINE, else {DEFAULT_ENGINE})"
        ),
    )
    up.add_argument(
        "--with",
        dest="extras",
        action="append",
        choices=["prometheus"],
        default=[],
        help="also start the lab's Prometheus and print its URL",
    )
    down = sub.add_parser("down", help="take the lab down", parents=[common])
    down.add_argument(
        "--purge", action="store_true", help="also delete the registry storage and image stamp"
    )
    sub.add_parser("status", help="show what is up", parents=[common])
    for name in ("kill-node", "start-node"):
        cmd = sub.add_parser(name, help=f"{name.replace('-', ' ')} I", parents=[common])
        cmd.add_argument("index", type=int, metavar="I", help="node number (1 is the manager)")
    sub.add_parser("stop-registry", help="stop the registry", parents=[common])
    sub.add_parser("start-registry", help="start the registry again", parents=[common])
    sub.add_parser("env", help="print export lines for the shell", parents=[common])
    return parser


def _status(lab: Lab) -> int:
    problems = lab.problems()
    print(f"lab: {'up' if not problems else 'NOT up'} ({lab.nodes} nodes)")
    for problem in problems:
        print(f"  - {problem}")
    print(f"registry: {lab.registry}  network: {lab.network}  DOCKER_HOST={lab.docker_host}")
    for i in range(1, lab.nodes + 1):
        node = lab.node(i)
        versions = lab.engine_version(i)
        running = f"{versions[0]} (API {versions[1]})" if versions else "not answering"
        print(
            f"  {node.name}  {node.address:<11} {node.role:<7} {node.docker_host}  "
            f"swarm: {lab.node_state(i) or '-'}  engine {lab.node_engine(i) or '?'}: "
            f"{running}"
        )
    return 0 if not problems else 1


def _engine(args: argparse.Namespace, nodes: int | None) -> str | None:
    """The engine(s) to use: as given, else $ZDD_LAB_ENGINE; for commands
    other than ``up``, else those the lab was last brought up with."""
    given = getattr(args, "engine", None) or os.environ.get("ZDD_LAB_ENGINE")
    if given or args.command == "up":
        return given
    recorded = Lab(nodes=nodes).recorded_engines()
    return ",".join(recorded) if recorded else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = (lambda message: None) if args.quiet else _say
    try:
        nodes = getattr(args, "nodes", None)
        lab = Lab(nodes=nodes, engine=_engine(args, nodes), progress=progress)
        if args.command == "up":
            info = lab.up()
            if info.reused:
                _say(
                    f"lab already up ({info.seconds:.1f}s check): {len(info.nodes)} nodes, "
                    f"DOCKER_HOST={info.docker_host}"
                )
            if "prometheus" in args.extras:
                print(f"prometheus: {lab.prometheus()}")
        elif args.command == "down":
            lab.down(purge=args.purge)
        elif args.command == "status":
            return _status(lab)
        elif args.command == "kill-node":
            lab.kill_node(args.index)
            _say(f"killed node {args.index}")
        elif args.command == "start-node":
            lab.start_node(args.index)
            _say(f"node {args.index} answers")
        elif args.command == "stop-registry":
            lab.stop_registry()
            _say("registry stopped")
        elif args.command == "start-registry":
            lab.start_registry()
            _say(f"registry answers on {lab.registry}")
        elif args.command == "env":
            print(f"export DOCKER_HOST={lab.docker_host}")
            print(f"export ZDD_LAB_REGISTRY={lab.registry}")
            print(f"export ZDD_LAB_NETWORK={lab.network}")
            for i in range(1, lab.nodes + 1):
                print(f"export ZDD_LAB_NODE{i}_HOST={lab.node_host(i)}")
    except LabError as exc:
        print(f"zdd-lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zdd-lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
