"""Benchmarks of zdd_swarm on the local swarm lab, side by side with Swarm's own tools.

Run as root on a machine where the lab can come up (``python -m zdd_swarm.lab up``)::

    .venv/bin/python benchmarks/run.py              # the full run (--pairs 5), ~15 min
    .venv/bin/python benchmarks/run.py --quick      # a short smoke run

It measures, in one run:

1. overhead: wall time of ``Controller.update`` against ``docker service update
   --detach=false`` on the same service, alternating which goes first;
2. verdict latency: engine ``UpdateStatus.CompletedAt`` -> our result (good
   release); first failed new task's ``Status.Timestamp`` -> our rollback request
   (bad release);
3. recovery: bad release -> every task healthy on the old spec, ours against
   Swarm's own ``failure_action=rollback``, for a crashing and a never-healthy image;
4. cost: Engine API requests, CPU and peak RSS of the controller (each measured
   rollout of ours runs in a fresh subprocess, so its peak RSS is its own);
5. scale: a 60-replica service, and 10 services rolled out at once by one process.

Raw results go to ``benchmarks/results.json`` (``--output``), a markdown table to
stdout. Services are named ``bench-<run id>-...`` and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results.json"
SECOND = 1_000_000_000
PREFIX = "bench-"
TERMINAL = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}

#: The service every comparison uses (the brief of these benchmarks).
REPLICAS = 6
UPDATE = {"parallelism": 2, "order": "start-first", "delay": "1s", "monitor": "3s"}

TARGETS = {
    "overhead_ratio": 1.03,
    "verdict_latency_good_s": 1.0,
    "verdict_latency_crash_s": 0.5,
    "watch_requests_per_s": 1.5,
    "start_to_first_request_s": 0.3,
    "cpu_percent": 2.0,
    "peak_rss_mb": 60.0,
}


# -- the child: one measured rollout in a fresh process ------------------------


def child_main(spec_path: str, out_path: str) -> None:
    """Run one update (or several at once, ``kind: multi``) and write what was
    measured as JSON to ``out_path``. Runs in its own process, so that
    ``ru_maxrss`` is the peak of this rollout alone."""
    rss_start = _peak_rss_mb()
    cpu_start = time.process_time()
    from zdd_swarm import (
        Controller,
        DockerEngine,
        RolloutOptions,
        ServiceChange,
        UpdateConfig,
        events,
    )

    spec = json.loads(Path(spec_path).read_text())
    out: dict[str, Any] = {
        "rss_before_import_mb": rss_start,
        "rss_after_import_mb": _peak_rss_mb(),
        "cpu_import_s": round(time.process_time() - cpu_start, 3),
    }

    def one(service: str, image: str, record: dict[str, Any]) -> None:
        engine = DockerEngine(spec["host"])
        seen: list[dict[str, Any]] = []

        def hook(event: Any) -> None:
            item = {
                "name": event.name,
                "t": time.time(),
                "elapsed": event.elapsed,
                "requests": engine.requests,
            }
            if isinstance(event, events.RollbackStarted):
                item.update(by=event.by, reason=event.reason, method=event.method)
            if isinstance(event, events.TaskFailed):
                item.update(cause=event.cause, task_id=event.task_id, error=event.error)
            seen.append(item)

        config = UpdateConfig(**spec["update_config"]) if spec.get("update_config") else None
        controller = Controller(engine, hooks=[hook], options=RolloutOptions(**spec["options"]))
        change = ServiceChange(image=image, update_config=config)
        record["wall_start"] = time.time()  # the first request is the next call's
        start = time.monotonic()
        result = controller.update(service, change)
        record["wall_end"] = time.time()
        record["duration_s"] = round(time.monotonic() - start, 3)
        record["requests"] = engine.requests
        record["outcome"] = result.outcome.value
        record["code"] = result.code
        record["reason"] = result.reason.message
        record["rollback_by"] = result.rollback_by
        record["result_duration_s"] = result.duration_s
        record["batches"] = len(result.batches)
        record["failures"] = result.failures
        record["events"] = [e for e in seen if e["name"] not in ("progress", "task_running")]
        record["event_counts"] = {
            n: sum(e["name"] == n for e in seen) for n in sorted({e["name"] for e in seen})
        }
        started = next((e for e in seen if e["name"] == "rollout_started"), None)
        if started is not None:
            record["watch_requests"] = engine.requests - started["requests"]
            record["watch_s"] = round(record["wall_end"] - started["t"], 3)
        status = engine.inspect_service(service).update_status  # after the count
        if status is not None:
            record["engine_state"] = status.state.value
            record["engine_started_at"] = _ts(status.started_at)
            record["engine_completed_at"] = _ts(status.completed_at)
        engine.close()

    cpu0 = time.process_time()
    wall0 = time.monotonic()
    if spec["kind"] == "update":
        one(spec["service"], spec["image"], out)
    else:
        records: list[dict[str, Any]] = [{"service": s} for s in spec["services"]]
        errors: list[str] = []

        def worker(record: dict[str, Any]) -> None:
            try:
                one(record["service"], spec["image"], record)
            except Exception as exc:  # reported, not hidden
                errors.append(f"{record['service']}: {exc!r}")
                record["error"] = repr(exc)

        threads = [threading.Thread(target=worker, args=(r,)) for r in records]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out["services"] = records
        out["errors"] = errors
        out["requests"] = sum(r.get("requests", 0) for r in records)
        out["duration_s"] = round(time.monotonic() - wall0, 3)
    out["cpu_s"] = round(time.process_time() - cpu0, 3)
    out["wall_s"] = round(time.monotonic() - wall0, 3)
    out["peak_rss_mb"] = _peak_rss_mb()
    out["ru_maxrss_mb"] = _maxrss_mb()
    Path(out_path).write_text(json.dumps(out))


def _maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MB (Linux reports KiB). Linux carries it
    over ``execve`` from the address space being replaced, so in a process
    spawned by a bigger one it starts at the spawner's RSS: recorded, not used."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _peak_rss_mb() -> float:
    """Peak RSS of this process's own address space (``VmHWM``), in MB; falls
    back to ``ru_maxrss`` where ``/proc`` has no such line."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return _maxrss_mb()


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


# -- the parent: services, native runs, observers --------------------------------


def library_python() -> str:
    """The Python of a virtual environment holding the library as users
    install it (``pip install .``: no test or docs tools, no SSH transport),
    so that the memory measured is the library's own. Made once, refreshed
    on every run."""
    venv = HERE / ".venv-lib"
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv.relative_to(HERE.parent)} (pip install .)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(HERE.parent),
        ],
        check=True,
    )
    return str(python)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import docker

        from zdd_swarm.lab import Lab

        self.args = args
        self.lab = Lab()
        self.lab.up()
        self.client = docker.DockerClient(base_url=self.lab.docker_host, timeout=60)
        self.run_id = uuid.uuid4().hex[:6]
        self.created: list[str] = []
        self.docker = shutil.which("docker") or "/usr/local/bin/docker"
        self.env = dict(os.environ, DOCKER_HOST=self.lab.docker_host)
        self.env.pop("DOCKER_CONTEXT", None)
        self.tmp = Path(tempfile.mkdtemp(prefix="zdd-bench-"))
        self.python = args.python or library_python()

    # -- services ---------------------------------------------------------------

    def name(self, what: str) -> str:
        return f"{PREFIX}{self.run_id}-{what}"

    def create(
        self,
        what: str,
        replicas: int,
        tag: str = "v1",
        update: Mapping[str, Any] | None = None,
        healthcheck: Any = None,
    ) -> str:
        from docker.types import EndpointSpec, RestartPolicy, ServiceMode

        from zdd_swarm import UpdateConfig

        name = self.name(what)
        config = UpdateConfig(**(update or UPDATE)).to_api()
        self.client.services.create(
            self.lab.image(tag),
            name=name,
            networks=[self.lab.network],
            mode=ServiceMode("replicated", replicas=replicas),
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            restart_policy=RestartPolicy(condition="any", delay=SECOND),
            update_config=config,
            labels={"zdd.bench": self.run_id},
            **({"healthcheck": healthcheck} if healthcheck is not None else {}),
        )
        self.created.append(name)
        return name

    def remove(self, name: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_service(name)
        if name in self.created:
            self.created.remove(name)

    def cleanup(self) -> None:
        for name in list(self.created):
            try:
                self.remove(name)
            except Exception as exc:
                print(f"warning: could not remove {name}: {exc}", file=sys.stderr)

    def service(self, name: str) -> Mapping[str, Any]:
        return self.client.api.inspect_service(name)  # type: ignore[no-any-return]

    def tasks(self, service_id: str) -> list[Mapping[str, Any]]:
        return [
            t
            for t in self.client.api.tasks(filters={"service": service_id})
            if t.get("ServiceID") == service_id
        ]

    def settle(self, name: str, replicas: int, timeout: float = 240) -> float:
        """Wait until no update runs, ``replicas`` tasks of the current spec run
        (healthy) and nothing else is starting or still draining."""
        start = time.monotonic()
        while True:
            svc = self.service(name)
            state = (svc.get("UpdateStatus") or {}).get("State")
            image = _image(svc["Spec"]["TaskTemplate"])
            tasks = self.tasks(svc["ID"])
            good = [
                t
                for t in tasks
                if t["DesiredState"] == "running"
                and t["Status"]["State"] == "running"
                and _image(t["Spec"]) == image
            ]
            busy = [
                t
                for t in tasks
                if (t["DesiredState"] == "running" and t["Status"]["State"] != "running")
                or (t["DesiredState"] != "running" and t["Status"]["State"] not in TERMINAL)
            ]
            if state not in ("updating", "rollback_started") and len(good) == replicas and not busy:
                return round(time.monotonic() - start, 3)
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"{name}: not settled after {timeout}s (state {state}, "
                    f"{len(good)}/{replicas} running, {len(busy)} busy)"
                )
            time.sleep(0.5)

    def prepull(self) -> None:
        """Every node pulls the images used here, so no run pays a first pull."""
        tags = ("v1", "v2", "v3", "crash", "unhealthy")
        for i in range(1, self.lab.nodes + 1):
            client = self.lab.client(i)
            try:
                for tag in tags:
                    client.images.pull(self.lab.image(tag))
            finally:
                client.close()

    def noise(self) -> dict[str, Any]:
        """What else was going on: load average and the lab's other services."""
        others = [
            s
            for s in self.client.api.services()
            if not s["Spec"]["Name"].startswith(PREFIX + self.run_id)
        ]
        return {"loadavg": [round(x, 2) for x in os.getloadavg()], "other_services": len(others)}

    # -- ours: one rollout in a fresh process --------------------------------------

    def ours(
        self,
        service: str,
        image: str,
        options: Mapping[str, Any] | None = None,
        kind: str = "update",
        services: Sequence[str] = (),
        update_config: Mapping[str, Any] | None = None,
        timeout: float = 600,
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex[:8]
        spec_path, out_path = self.tmp / f"{token}.spec.json", self.tmp / f"{token}.out.json"
        spec_path.write_text(
            json.dumps(
                {
                    "kind": kind,
                    "host": self.lab.docker_host,
                    "service": service,
                    "image": image,
                    "services": list(services),
                    "options": dict(options or {}),
                    "update_config": dict(update_config) if update_config else None,
                }
            )
        )
        launched = time.time()
        proc = subprocess.run(
            [self.python, str(Path(__file__).resolve()), "--child", str(spec_path), str(out_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out: dict[str, Any] = json.loads(out_path.read_text())
        out["process_wall_s"] = round(time.time() - launched, 3)
        if "wall_start" in out:
            out["start_to_first_request_s"] = round(out["wall_start"] - launched, 3)
        return out

    # -- native -------------------------------------------------------------------

    def cli(self, *argv: str, timeout: float = 600) -> dict[str, Any]:
        start = time.time()
        t0 = time.monotonic()
        proc = subprocess.run(
            [self.docker, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return {
            "wall_start": start,
            "wall_end": time.time(),
            "duration_s": round(time.monotonic() - t0, 3),
            "exit_code": proc.returncode,
            "output_tail": (proc.stdout + proc.stderr).strip().splitlines()[-3:],
        }

    def cli_background(self, *argv: str) -> tuple[subprocess.Popen[str], float]:
        start = time.time()
        proc = subprocess.Popen(
            [self.docker, *argv],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return proc, start


def _image(template: Mapping[str, Any]) -> str:
    return str((template.get("ContainerSpec") or {}).get("Image", ""))


def _engine_ts(value: object) -> float | None:
    from zdd_swarm.model import parse_timestamp

    parsed = parse_timestamp(value)
    return parsed.timestamp() if parsed is not None else None


class Observer:
    """Watches a service from the outside (every 0.25 s, its own client) through
    a bad release: when the engine started the update, and when the spec is back
    on the old image with ``replicas`` tasks of it running (healthy) and nothing
    else desired running."""

    def __init__(
        self,
        bench: Bench,
        name: str,
        old_image: str,
        replicas: int,
        stale_started: str | None,
        timeout: float = 240,
    ) -> None:
        self.bench, self.name, self.old_image, self.replicas = bench, name, old_image, replicas
        self.stale_started = stale_started
        self.timeout = timeout
        self.started_at: float | None = None  # engine UpdateStatus.StartedAt of the bad update
        # a fast update may pass from updating to a rollback between two looks:
        # then everything after this moment counts
        self.begun = time.time()
        self.healthy_at: float | None = None  # observer clock
        self.rollback_completed_at: float | None = None  # engine CompletedAt of the rollback
        self.rollback_seen_at: float | None = None  # observer clock: state rollback_*
        self.states: list[str] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait(self) -> None:
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        import docker

        client = docker.DockerClient(base_url=self.bench.lab.docker_host, timeout=30)
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                now = time.time()
                svc = client.api.inspect_service(self.name)
                status = svc.get("UpdateStatus") or {}
                state = status.get("State")
                if state and (not self.states or self.states[-1] != state):
                    self.states.append(state)
                if (
                    self.started_at is None
                    and state == "updating"
                    and status.get("StartedAt") != self.stale_started
                ):
                    self.started_at = _engine_ts(status.get("StartedAt"))
                if (
                    self.rollback_seen_at is None
                    and state in ("rollback_started", "rollback_completed")
                    and status.get("StartedAt") != self.stale_started
                ):
                    self.rollback_seen_at = now
                tasks = [
                    t
                    for t in client.api.tasks(filters={"service": svc["ID"]})
                    if t.get("ServiceID") == svc["ID"] and t["DesiredState"] == "running"
                ]
                spec_old = _image(svc["Spec"]["TaskTemplate"]) == self.old_image
                moved = self.started_at is not None or self.rollback_seen_at is not None
                healthy = (
                    moved
                    and spec_old
                    and len(tasks) == self.replicas
                    and all(
                        t["Status"]["State"] == "running" and _image(t["Spec"]) == self.old_image
                        for t in tasks
                    )
                )
                if healthy and self.healthy_at is None:
                    self.healthy_at = now
                completed = _engine_ts(status.get("CompletedAt"))
                if (
                    state == "rollback_completed"
                    and completed is not None
                    and completed > (self.started_at or self.begun)
                ):
                    # not the status a previous run left behind
                    self.rollback_completed_at = completed
                if self.healthy_at is not None and self.rollback_completed_at is not None:
                    return
                time.sleep(0.25)
            if self.healthy_at is None or self.rollback_completed_at is None:
                self.error = f"not recovered within {self.timeout}s (states {self.states})"
        except Exception as exc:
            self.error = repr(exc)
        finally:
            client.close()


# -- the benchmarks ----------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_overhead(bench: Bench, pairs: int) -> list[dict[str, Any]]:
    """Good releases, ours and the docker CLI's blocking update in turn on one
    service; images alternate v2/v3 so that every run is a real change."""
    name = bench.create("overhead", REPLICAS)
    bench.settle(name, REPLICAS)
    runs: list[dict[str, Any]] = []
    images = ["v2", "v3"]
    step = 0
    for pair in range(pairs):
        order = ["ours", "docker"] if pair % 2 == 0 else ["docker", "ours"]
        for tool in order:
            tag = images[step % 2]
            step += 1
            image = bench.lab.image(tag)
            noise = bench.noise()
            if tool == "ours":
                run = bench.ours(name, image)
                ended = run["wall_end"]
                ok = run["outcome"] == "completed"
            else:
                run = bench.cli("service", "update", "--image", image, "--detach=false", name)
                ended = run["wall_end"]
                ok = run["exit_code"] == 0
            svc = bench.service(name)
            status = svc.get("UpdateStatus") or {}
            run.update(
                tool=tool,
                pair=pair,
                image=tag,
                ok=ok,
                noise=noise,
                engine_state_after=status.get("State"),
                engine_started_at=_engine_ts(status.get("StartedAt")),
                engine_completed_at=_engine_ts(status.get("CompletedAt")),
            )
            run["settle_s"] = bench.settle(name, REPLICAS)
            # the engine's verdict may come after the CLI returned: re-read it
            status = bench.service(name).get("UpdateStatus") or {}
            run["engine_state"] = status.get("State")
            run["engine_started_at"] = _engine_ts(status.get("StartedAt"))
            run["engine_completed_at"] = _engine_ts(status.get("CompletedAt"))
            if run["engine_completed_at"] is not None:
                run["after_engine_completed_s"] = round(ended - run["engine_completed_at"], 3)
                if run["engine_started_at"] is not None:
                    run["engine_update_s"] = round(
                        run["engine_completed_at"] - run["engine_started_at"], 3
                    )
            runs.append(run)
            log(
                f"overhead pair {pair} {tool:6} {tag}: {run['duration_s']:.2f}s "
                f"(engine {run.get('engine_update_s')}s, after CompletedAt "
                f"{run.get('after_engine_completed_s')}s) ok={ok}"
            )
    bench.remove(name)
    return runs


def bench_recovery(bench: Bench, runs_each: int, bad_tags: Sequence[str]) -> list[dict[str, Any]]:
    """Bad releases: ours (default rollback, task_deadline 20s) against Swarm's
    own failure_action=rollback, alternating which goes first."""
    name = bench.create("recovery", REPLICAS)
    bench.settle(name, REPLICAS)
    old_image = bench.lab.image("v1")
    results: list[dict[str, Any]] = []
    for bad in bad_tags:
        for i in range(runs_each):
            order = ["ours", "swarm"] if i % 2 == 0 else ["swarm", "ours"]
            for tool in order:
                results.append(_recovery_run(bench, name, old_image, bad, tool, i))
    bench.remove(name)
    return results


def _recovery_run(
    bench: Bench, name: str, old_image: str, bad: str, tool: str, index: int
) -> dict[str, Any]:
    image = bench.lab.image(bad)
    svc = bench.service(name)
    stale = (svc.get("UpdateStatus") or {}).get("StartedAt")
    noise = bench.noise()
    observer = Observer(bench, name, old_image, REPLICAS, stale)
    run: dict[str, Any]
    with observer:
        if tool == "ours":
            run = bench.ours(name, image, options={"task_deadline": "20s"})
            client_start = run["wall_start"]
            observer.wait()
        else:
            proc, client_start = bench.cli_background(
                "service",
                "update",
                "--update-failure-action",
                "rollback",
                "--image",
                image,
                "--detach=false",
                name,
            )
            try:
                output, _ = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            run = {
                "wall_start": client_start,
                "wall_end": time.time(),
                "exit_code": proc.returncode,
                "output_tail": output.strip().splitlines()[-2:],
            }
            observer.wait()
    run.update(
        tool=tool,
        bad=bad,
        index=index,
        noise=noise,
        states=observer.states,
        observer_error=observer.error,
    )
    start = observer.started_at or client_start
    run["start_source"] = "engine StartedAt" if observer.started_at else "client"
    if observer.healthy_at is not None:
        run["healthy_s"] = round(observer.healthy_at - start, 3)
    if observer.rollback_completed_at is not None:
        run["rollback_completed_s"] = round(observer.rollback_completed_at - start, 3)
    if tool == "swarm":
        run["cli_returned_s"] = round(run["wall_end"] - start, 3)
    else:
        run["result_s"] = round(run["wall_end"] - start, 3)
        rollback = next((e for e in run["events"] if e["name"] == "rollback_started"), None)
        svc_id = bench.service(name)["ID"]
        # this run's failed tasks only (earlier runs of the same image left theirs)
        failed = [
            t
            for t in bench.tasks(svc_id)
            if _image(t["Spec"]) == image
            and t["Status"]["State"] in ("failed", "rejected", "complete")
            and (_engine_ts(t.get("CreatedAt")) or 0.0) >= client_start - 1.0
        ]
        first = min((_engine_ts(t["Status"].get("Timestamp")) or 0.0 for t in failed), default=None)
        if rollback is not None and first:
            run["first_failed_at"] = first
            run["rollback_requested_at"] = rollback["t"]
            run["verdict_latency_s"] = round(rollback["t"] - first, 3)
    run["settle_s"] = bench.settle(name, REPLICAS)
    log(
        f"recovery {bad:9} {tool:5} #{index}: healthy {run.get('healthy_s')}s, "
        f"rollback completed {run.get('rollback_completed_s')}s, "
        f"{'result' if tool == 'ours' else 'cli'} "
        f"{run.get('result_s', run.get('cli_returned_s'))}s"
        + (
            f", outcome {run.get('outcome')} ({run.get('code')}), verdict latency "
            f"{run.get('verdict_latency_s')}s"
            if tool == "ours"
            else f", exit {run.get('exit_code')}"
        )
        + (f" ERROR {observer.error}" if observer.error else "")
    )
    return run


def bench_scale(bench: Bench, replicas: int, parallelism: int) -> dict[str, Any]:
    from docker.types import Healthcheck

    update = dict(UPDATE, parallelism=parallelism)
    # the test image checks its health every second: 60 replicas of that on
    # 2 cores would measure the healthchecks, not the rollout; every 5 s here
    slower = Healthcheck(
        test=["CMD", "/bin/sh", "/health.sh"],
        interval=5 * SECOND,
        timeout=5 * SECOND,
        retries=3,
        start_period=10 * SECOND,
    )
    name = bench.create(f"scale{replicas}", replicas, update=update, healthcheck=slower)
    created = time.monotonic()
    bench.settle(name, replicas, timeout=600)
    log(f"scale: {replicas} replicas running after {time.monotonic() - created:.0f}s")
    noise = bench.noise()
    run = bench.ours(name, bench.lab.image("v2"))
    run.update(replicas=replicas, parallelism=parallelism, noise=noise, noise_after=bench.noise())
    log(
        f"scale: {replicas} replicas at parallelism {parallelism}: {run['outcome']} in "
        f"{run['duration_s']:.1f}s, {run['requests']} requests, "
        f"peak RSS {run['peak_rss_mb']} MB"
    )
    bench.remove(name)
    return run


def bench_many(bench: Bench, count: int, replicas: int) -> dict[str, Any]:
    names = [bench.create(f"many{i}", replicas) for i in range(count)]
    for name in names:
        bench.settle(name, replicas)
    noise = bench.noise()
    run = bench.ours("", bench.lab.image("v2"), kind="multi", services=names)
    run.update(count=count, replicas=replicas, noise=noise)
    outcomes = [s.get("outcome") for s in run["services"]]
    run["all_completed"] = all(o == "completed" for o in outcomes)
    log(
        f"many: {count} services x {replicas}: {run['duration_s']:.1f}s, outcomes "
        f"{sorted(set(map(str, outcomes)))}, {run['requests']} requests"
    )
    for name in names:
        bench.remove(name)
    return run


# -- machine, summary, table ---------------------------------------------------------


def machine(bench: Bench) -> dict[str, Any]:
    from zdd_swarm import __version__

    info = bench.client.api.info()
    version = bench.client.api.version()
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cli = subprocess.run(
        [bench.docker, "version", "--format", "{{.Client.Version}}"],
        env=bench.env,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "")
        if hasattr(platform, "freedesktop_os_release")
        else "",
        "python": platform.python_version(),
        "rollouts_run_by": str(Path(bench.python).relative_to(HERE.parent))
        if Path(bench.python).is_relative_to(HERE.parent)
        else bench.python,
        "engine_version": version.get("Version"),
        "engine_api_version": version.get("ApiVersion"),
        "docker_cli_version": cli.stdout.strip(),
        "swarm_nodes": (info.get("Swarm") or {}).get("Nodes"),
        "zdd_swarm_version": __version__,
        "commit": commit,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _median(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return round(statistics.median(clean), 3) if clean else None


def _max(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return round(max(clean), 3) if clean else None


def summarise(results: Mapping[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    overhead = results.get("overhead", [])
    ours = [r for r in overhead if r["tool"] == "ours"]
    native = [r for r in overhead if r["tool"] == "docker"]
    ratios = []
    for pair in sorted({r["pair"] for r in overhead}):
        a = next((r for r in ours if r["pair"] == pair), None)
        b = next((r for r in native if r["pair"] == pair), None)
        if a and b and a["ok"] and b["ok"]:
            ratios.append(a["duration_s"] / b["duration_s"])
    s["overhead"] = {
        "pairs": len(ratios),
        "ours_median_s": _median([r["duration_s"] for r in ours]),
        "docker_median_s": _median([r["duration_s"] for r in native]),
        "ratio_median": _median(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "ours_after_engine_completed_median_s": _median(
            [r.get("after_engine_completed_s") for r in ours]
        ),
        "docker_after_engine_completed_median_s": _median(
            [r.get("after_engine_completed_s") for r in native]
        ),
        "engine_update_median_s": _median([r.get("engine_update_s") for r in overhead]),
        "all_ok": all(r["ok"] for r in overhead),
    }
    recovery = results.get("recovery", [])
    s["verdict_latency"] = {
        "good_median_s": _median([r.get("after_engine_completed_s") for r in ours]),
        "good_max_s": _max([r.get("after_engine_completed_s") for r in ours]),
    }
    s["recovery"] = {}
    for bad in sorted({r["bad"] for r in recovery}):
        rows = [r for r in recovery if r["bad"] == bad]
        mine = [r for r in rows if r["tool"] == "ours"]
        swarm = [r for r in rows if r["tool"] == "swarm"]
        s["verdict_latency"][f"{bad}_median_s"] = _median(
            [r.get("verdict_latency_s") for r in mine]
        )
        s["verdict_latency"][f"{bad}_max_s"] = _max([r.get("verdict_latency_s") for r in mine])
        s["recovery"][bad] = {
            "runs": len(mine),
            "ours_healthy_median_s": _median([r.get("healthy_s") for r in mine]),
            "swarm_healthy_median_s": _median([r.get("healthy_s") for r in swarm]),
            "ours_rollback_completed_median_s": _median(
                [r.get("rollback_completed_s") for r in mine]
            ),
            "swarm_rollback_completed_median_s": _median(
                [r.get("rollback_completed_s") for r in swarm]
            ),
            "ours_result_median_s": _median([r.get("result_s") for r in mine]),
            "swarm_cli_returned_median_s": _median([r.get("cli_returned_s") for r in swarm]),
            "ours_outcomes": sorted({f"{r.get('outcome')}/{r.get('code')}" for r in mine}),
            "swarm_cli_exit_codes": sorted({r.get("exit_code") for r in swarm}),
            "errors": [r["observer_error"] for r in rows if r.get("observer_error")],
        }
    measured = ours + [r for r in recovery if r["tool"] == "ours"]
    for extra in ("scale",):
        if results.get(extra):
            measured.append(results[extra])
    rate = [r["requests"] / r["duration_s"] for r in measured if r.get("duration_s")]
    watch_rate = [r["watch_requests"] / r["watch_s"] for r in measured if r.get("watch_s")]
    cpu = [100 * r["cpu_s"] / r["wall_s"] for r in measured if r.get("wall_s")]
    s["cost"] = {
        "rollouts": len(measured),
        "requests_per_good_rollout_median": _median([r["requests"] for r in ours]),
        "requests_per_bad_rollout_median": _median(
            [r["requests"] for r in recovery if r["tool"] == "ours"]
        ),
        "requests_per_s_median": _median(rate),
        "requests_per_s_max": _max(rate),
        "requests_per_min_median": _median([60 * x for x in rate]),
        "watch_requests_per_s_median": _median(watch_rate),
        "watch_requests_per_s_max": _max(watch_rate),
        "cpu_percent_median": _median(cpu),
        "cpu_percent_max": _max(cpu),
        "peak_rss_mb_median": _median([r["peak_rss_mb"] for r in measured]),
        "peak_rss_mb_max": _max([r["peak_rss_mb"] for r in measured]),
        "rss_after_import_mb_median": _median([r["rss_after_import_mb"] for r in measured]),
        "start_to_first_request_median_s": _median(
            [r.get("start_to_first_request_s") for r in measured]
        ),
    }
    scale = results.get("scale")
    if scale:
        s["scale"] = {
            "replicas": scale["replicas"],
            "parallelism": scale["parallelism"],
            "outcome": scale["outcome"],
            "duration_s": scale["duration_s"],
            "requests": scale["requests"],
            "requests_per_s": round(scale["requests"] / scale["duration_s"], 2),
            "cpu_percent": round(100 * scale["cpu_s"] / scale["wall_s"], 2),
            "peak_rss_mb": scale["peak_rss_mb"],
            "after_engine_completed_s": round(scale["wall_end"] - scale["engine_completed_at"], 3)
            if scale.get("engine_completed_at")
            else None,
        }
    many = results.get("many")
    if many:
        s["many"] = {
            "services": many["count"],
            "replicas": many["replicas"],
            "all_completed": many["all_completed"],
            "errors": many["errors"],
            "total_s": many["duration_s"],
            "requests": many["requests"],
            "requests_per_s": round(many["requests"] / many["duration_s"], 2),
            "requests_per_s_per_service": round(
                many["requests"] / many["duration_s"] / many["count"], 2
            ),
            "cpu_percent": round(100 * many["cpu_s"] / many["wall_s"], 2),
            "peak_rss_mb": many["peak_rss_mb"],
            "slowest_service_s": _max([r.get("duration_s") for r in many["services"]]),
        }
    return s


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= limit else "**missed**"


def _target(value: float | None, key: str, unit: str = "") -> str:
    limit = TARGETS[key]
    return f"<= {limit:g}{unit}: {_verdict(value, limit)}"


def table(summary: Mapping[str, Any], pairs: int) -> str:
    return _markdown(["zdd_swarm", "Swarm / docker CLI"], table_rows(summary))


def _markdown(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| Measure | " + " | ".join(columns) + " | Target |"]
    lines.append("|---" * (len(columns) + 2) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _joined(target: list[str] | None) -> str:
    return f"{target[0]}: {', '.join(target[1:])}" if target else ""


def table_by_engine(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """One table, the engines side by side (rows matched by their measure)."""
    columns: list[str] = []
    merged: dict[str, list[str]] = {}
    targets: dict[str, list[str]] = {}
    for engine, summary in summaries.items():
        columns += [f"{engine}: zdd_swarm", f"{engine}: Swarm / docker CLI"]
        for measure, ours, native, target in table_rows(summary):
            cells = merged.setdefault(measure, [])
            cells += [""] * (len(columns) - 2 - len(cells)) + [ours, native]
            if target:  # "<= 1.03: met" -> "<= 1.03", "28.5 met"
                limit, _, verdict = target.partition(": ")
                targets.setdefault(measure, [limit]).append(f"{engine} {verdict}")
    body = [
        [m, *cells, *[""] * (len(columns) - len(cells)), _joined(targets.get(m))]
        for m, cells in merged.items()
    ]
    return _markdown(columns, body)


def table_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    o, v, c = summary["overhead"], summary["verdict_latency"], summary["cost"]
    rows = [
        (
            "Good rollout wall time, median (6 replicas, par. 2, start-first)",
            _fmt(o["ours_median_s"], " s"),
            _fmt(o["docker_median_s"], " s") + " (`--detach=false`)",
            "",
        ),
        (
            f"Overhead: median of per-pair ratios ours/docker ({o['pairs']} pairs)",
            _fmt(o["ratio_median"]),
            "1.00",
            _target(o["ratio_median"], "overhead_ratio"),
        ),
        (
            "Returned after the engine's `CompletedAt`, median",
            _fmt(o["ours_after_engine_completed_median_s"], " s"),
            _fmt(o["docker_after_engine_completed_median_s"], " s"),
            "",
        ),
        (
            "Verdict latency, good: `CompletedAt` -> result, median (max)",
            f"{_fmt(v['good_median_s'], ' s')} ({_fmt(v['good_max_s'], ' s')})",
            "",
            _target(v["good_median_s"], "verdict_latency_good_s", " s"),
        ),
    ]
    for bad in sorted(summary["recovery"]):
        rows.append(
            (
                f"Verdict latency, {bad}: first failed task -> rollback request, median (max)",
                f"{_fmt(v.get(f'{bad}_median_s'), ' s')} ({_fmt(v.get(f'{bad}_max_s'), ' s')})",
                "",
                _target(v.get(f"{bad}_median_s"), "verdict_latency_crash_s", " s")
                if bad == "crash"
                else "",
            )
        )
    for bad, r in sorted(summary["recovery"].items()):
        rows.append(
            (
                f"Recovery, {bad}: start -> all healthy on the old spec, median",
                _fmt(r["ours_healthy_median_s"], " s"),
                _fmt(r["swarm_healthy_median_s"], " s") + " (`failure_action=rollback`)",
                "",
            )
        )
        rows.append(
            (
                f"Recovery, {bad}: start -> engine `rollback_completed`, median",
                _fmt(r["ours_rollback_completed_median_s"], " s"),
                _fmt(r["swarm_rollback_completed_median_s"], " s"),
                "",
            )
        )
        rows.append(
            (
                f"Recovery, {bad}: start -> caller told, median",
                _fmt(r["ours_result_median_s"], " s") + f" ({', '.join(r['ours_outcomes'])})",
                _fmt(r["swarm_cli_returned_median_s"], " s")
                + f" (CLI exit {', '.join(map(str, r['swarm_cli_exit_codes']))})",
                "",
            )
        )
    rows += [
        (
            "Engine API requests per rollout, median (good / bad)",
            f"{_fmt(c['requests_per_good_rollout_median'])} / "
            f"{_fmt(c['requests_per_bad_rollout_median'])}",
            "",
            "",
        ),
        (
            "Requests/s over the whole call, median (max)",
            f"{_fmt(c['requests_per_s_median'])} ({_fmt(c['requests_per_s_max'])})",
            "",
            "",
        ),
        (
            "Requests/s while watching (poll loop), median (max)",
            f"{_fmt(c['watch_requests_per_s_median'])} ({_fmt(c['watch_requests_per_s_max'])})",
            "",
            _target(c["watch_requests_per_s_median"], "watch_requests_per_s", "/s"),
        ),
        (
            "Process start -> first Engine API request, median",
            _fmt(c["start_to_first_request_median_s"], " s"),
            "",
            _target(c["start_to_first_request_median_s"], "start_to_first_request_s", " s"),
        ),
        (
            "Controller CPU, % of wall time, median (max)",
            f"{_fmt(c['cpu_percent_median'], ' %')} ({_fmt(c['cpu_percent_max'], ' %')})",
            "",
            _target(c["cpu_percent_max"], "cpu_percent", " %"),
        ),
        (
            "Peak RSS per rollout process, median (max)",
            f"{_fmt(c['peak_rss_mb_median'], ' MB')} ({_fmt(c['peak_rss_mb_max'], ' MB')})",
            "",
            _target(c["peak_rss_mb_max"], "peak_rss_mb", " MB"),
        ),
    ]
    sc = summary.get("scale")
    if sc:
        rows.append(
            (
                f"Scale: {sc['replicas']} replicas, parallelism {sc['parallelism']}",
                f"{sc['outcome']} in {_fmt(sc['duration_s'], ' s')}; "
                f"{_fmt(sc['requests_per_s'])} req/s; CPU {_fmt(sc['cpu_percent'], ' %')}; "
                f"RSS {_fmt(sc['peak_rss_mb'], ' MB')}",
                "",
                "",
            )
        )
    m = summary.get("many")
    if m:
        rows.append(
            (
                f"Scale: {m['services']} services x {m['replicas']} replicas at once, one process",
                f"{'all completed' if m['all_completed'] else 'NOT all completed'} in "
                f"{_fmt(m['total_s'], ' s')}; {_fmt(m['requests_per_s'])} req/s "
                f"({_fmt(m['requests_per_s_per_service'])} per service); "
                f"CPU {_fmt(m['cpu_percent'], ' %')}; RSS {_fmt(m['peak_rss_mb'], ' MB')}",
                "",
                "",
            )
        )
    return rows


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", type=int, default=5, help="pairs of runs per comparison (default 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: 1 pair, small scale tests"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the raw results (default benchmarks/results.json)",
    )
    parser.add_argument(
        "--only",
        choices=["overhead", "recovery", "scale", "many"],
        action="append",
        help="run only these parts (repeatable)",
    )
    parser.add_argument(
        "--python",
        help="the Python that runs our rollouts (default: a "
        "virtual environment with only `pip install .`, benchmarks/.venv-lib)",
    )
    parser.add_argument(
        "--engine",
        action="append",
        help="run on this lab engine (28.5, 26.1, 20.10; repeatable: one run per engine, "
        "then one table with the engines side by side; default: the lab's default)",
    )
    parser.add_argument(
        "--update-delay",
        default=UPDATE["delay"],
        help="the services' update delay (default %(default)s; Swarm's default is 0s). "
        "Swarm's updater waits it after the last batch too, before its last monitor "
        "period; docker service update --detach=false does not",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    UPDATE["delay"] = args.update_delay
    if args.pairs < 1:
        parser.error("--pairs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(*args.child)
        return 0
    if not args.engine:
        results = run_all(args, args.output)
        print(table(results["summary"], results["config"]["pairs"]))
        return 0
    summaries: dict[str, Any] = {}
    for engine in args.engine:
        os.environ["ZDD_LAB_ENGINE"] = engine  # the lab comes up with it
        output = args.output.with_name(f"{args.output.stem}-{engine}{args.output.suffix}")
        summaries[engine] = run_all(args, output)["summary"]
    print(table_by_engine(summaries))
    return 0


def run_all(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Every part asked for, on the lab as it comes up now; raw results to
    ``output``."""
    pairs = 1 if args.quick else args.pairs
    scale_replicas, scale_parallelism = (12, 4) if args.quick else (60, 10)
    many = (3, 3) if args.quick else (10, 3)
    parts = set(args.only or ["overhead", "recovery", "scale", "many"])
    bench = Bench(args)
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "pairs": pairs,
            "quick": args.quick,
            "replicas": REPLICAS,
            "update_config": UPDATE,
            "poll_interval_s": 1.0,
            "recovery_task_deadline": "20s",
            "scale": [scale_replicas, scale_parallelism],
            "many": list(many),
            "parts": sorted(parts),
            "engines": bench.lab.engines,
        },
    }
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("overhead", lambda: bench_overhead(bench, pairs)),
        ("recovery", lambda: bench_recovery(bench, pairs, ("crash", "unhealthy"))),
        ("scale", lambda: bench_scale(bench, scale_replicas, scale_parallelism)),
        ("many", lambda: bench_many(bench, *many)),
    ]
    try:
        results["machine"] = machine(bench)
        log(f"machine: {results['machine']}")
        log("pre-pulling the images on every node")
        bench.prepull()
        for key, run in steps:
            if key in parts:
                log(f"--- {key}")
                results[key] = run()
    finally:
        bench.cleanup()
        shutil.rmtree(bench.tmp, ignore_errors=True)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.monotonic() - started, 1)
    results["summary"] = summarise(results)
    results["targets"] = TARGETS
    output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"done in {results['total_s']:.0f}s; raw results in {output}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
