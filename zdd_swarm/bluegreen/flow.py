"""The blue-green flow: a state machine of stages and a thin runner.

``advance`` is the whole decision table (pure): given the stage that just
ran and whether it succeeded, which stage comes next. ``BlueGreen`` carries
the stages out on the engine, in the controller's clock::

    ENSURE_IDLE -> SCALE_UP -> PREVIEW -> SWITCH -> VERIFY -> POST_SWITCH
        -> SCALE_DOWN_DELAY -> SCALE_DOWN_OLD -> DONE
    SCALE_UP / PREVIEW fail          -> SCALE_DOWN_IDLE -> DONE   (router untouched)
    PREVIEW without auto_promote     -> AWAIT_PROMOTE -> DONE     (``promote`` goes on at SWITCH)
    VERIFY / POST_SWITCH fail        -> SWITCH_BACK -> SCALE_DOWN_IDLE -> DONE

The idle colour scales up through ``Controller.update``: its new tasks are
watched with the same task checks, deadlines and gates (``options.gates``,
sampled on the preview route) as a rolling update, and a failure there rolls
it back to 0. PREVIEW and POST_SWITCH sample their checks and, where given,
measure their analysis (``zdd_swarm.canary.analysis``, on the new colour's
service) alongside, until the window is over and the analysis has ended.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from .._logging import get_logger
from ..canary.analysis import (
    AnalysisRun,
    Metric,
    Phase,
    QueryContext,
    analysis_summary,
    check_metrics,
    measure_due,
)
from ..config import RolloutOptions, _duration
from ..controller import Controller
from ..engine import StackEngine
from ..errors import (
    ConfigError,
    InputError,
    NotAManager,
    UpdateInProgress,
    ZddError,
)
from ..events import BlueGreenStage
from ..gates import Gate, as_gates
from ..model import TaskState, TaskView, replicas_of
from ..result import Outcome, Reason, RolloutResult
from ..spec import ServiceChange, validate_image_reference
from .lease import hold
from .model import (
    LABEL_FAILED,
    LABEL_ROUTER,
    LABEL_SCALE_DOWN_DELAY,
    SCALE_DOWN_DELAY,
    BlueGreenCode,
    BlueGreenOutcome,
    BlueGreenResult,
    CheckCount,
    Colour,
    colour_spec,
    ours,
)
from .probe import Fetch, RouterProbe, identities, urllib_fetch
from .router import Router
from .routing import check_remembered, parse_router, spec_of
from .store import (
    Pair,
    acquire,
    read_pair,
    record,
    release,
    remember,
    set_replicas,
    write_state,
)

__all__ = ["BlueGreen", "BlueGreenOptions", "Stage", "advance"]

log = get_logger("zdd_swarm.bluegreen")


class Stage(enum.StrEnum):
    ENSURE_IDLE = "ensure_idle"
    SCALE_UP = "scale_up"
    PREVIEW = "preview"
    AWAIT_PROMOTE = "await_promote"
    SWITCH = "switch"
    VERIFY = "verify"
    POST_SWITCH = "post_switch"
    SCALE_DOWN_DELAY = "scale_down_delay"
    SCALE_DOWN_OLD = "scale_down_old"
    SWITCH_BACK = "switch_back"
    SCALE_DOWN_IDLE = "scale_down_idle"
    DONE = "done"


#: stage -> (next when it succeeded, next when it failed)
_TABLE: dict[Stage, tuple[Stage, Stage]] = {
    Stage.ENSURE_IDLE: (Stage.SCALE_UP, Stage.DONE),
    Stage.SCALE_UP: (Stage.PREVIEW, Stage.SCALE_DOWN_IDLE),
    Stage.PREVIEW: (Stage.SWITCH, Stage.SCALE_DOWN_IDLE),
    Stage.AWAIT_PROMOTE: (Stage.DONE, Stage.DONE),
    Stage.SWITCH: (Stage.VERIFY, Stage.SWITCH_BACK),
    Stage.VERIFY: (Stage.POST_SWITCH, Stage.SWITCH_BACK),
    Stage.POST_SWITCH: (Stage.SCALE_DOWN_DELAY, Stage.SWITCH_BACK),
    Stage.SCALE_DOWN_DELAY: (Stage.SCALE_DOWN_OLD, Stage.DONE),
    Stage.SCALE_DOWN_OLD: (Stage.DONE, Stage.DONE),
    Stage.SWITCH_BACK: (Stage.SCALE_DOWN_IDLE, Stage.DONE),
    Stage.SCALE_DOWN_IDLE: (Stage.DONE, Stage.DONE),
}


def advance(stage: Stage, ok: bool, *, auto_promote: bool = True) -> Stage:
    """The stage after ``stage``, which succeeded (``ok``) or failed."""
    if stage is Stage.PREVIEW and ok and not auto_promote:
        return Stage.AWAIT_PROMOTE
    return _TABLE[stage][0 if ok else 1]


@dataclass(frozen=True)
class BlueGreenOptions:
    """How a release goes from one colour to the other. Durations accept
    ``timedelta``, seconds or compose strings (``"30s"``)."""

    auto_promote: bool = True
    """Switch as soon as the new colour passed its checks; False: wait for ``promote``."""
    preview_checks: tuple[Gate, ...] = ()
    """Checks of the new colour on its preview route, before any user sees it."""
    preview_window: timedelta = timedelta(seconds=10)
    """How long the preview checks are sampled."""
    post_switch_checks: tuple[Gate, ...] = ()
    """Checks after the switch; one failing switches back at once."""
    post_switch_window: timedelta = timedelta(seconds=10)
    """How long the post-switch checks are sampled."""
    switch_timeout: timedelta = timedelta(seconds=30)
    """How long the router may take to show the switch."""
    scale_down_delay: timedelta = SCALE_DOWN_DELAY
    """How long the old colour stays up after the switch (an instant way back)."""
    router_url: str | None = None
    """The router's public address. Before anything changes, requests through it must
    reach the active colour (else bad input); after a switch (and a switch back), the
    new colour, within ``switch_timeout``, before the switch counts as done."""
    router_answer: str = "body"
    """Where an answer through ``router_url`` says who answered: ``body`` or
    ``header:NAME``; it names a colour by its name, its image or the image's tag."""
    router_fetch: Fetch = field(default=urllib_fetch, compare=False)
    """How a request to ``router_url`` is sent (by default ``urllib``)."""
    preview_analysis: tuple[Metric, ...] = ()
    """Metrics measured while the preview checks are sampled (their ``{service}`` is the
    new colour's); one that fails or errs, or an analysis that ends inconclusive, and
    the release is not switched to. Each is measured once before anything changes."""
    post_switch_analysis: tuple[Metric, ...] = ()
    """Metrics measured while the post-switch checks are sampled; one that fails or errs,
    or an analysis that ends inconclusive, switches back."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("preview_window", "post_switch_window", "switch_timeout", "scale_down_delay"):
            set_(self, name, _duration(name, getattr(self, name), allow_none=False))
        set_(self, "preview_checks", as_gates(self.preview_checks, "preview_checks"))
        set_(self, "post_switch_checks", as_gates(self.post_switch_checks, "post_switch_checks"))
        for name in ("preview_analysis", "post_switch_analysis"):
            set_(self, name, _metrics(name, getattr(self, name)))
        if not isinstance(self.auto_promote, bool):
            raise ConfigError("auto_promote", self.auto_promote, "true or false")
        _ = self.router_probe  # a bad router_url or router_answer fails here

    @property
    def router_probe(self) -> RouterProbe | None:
        """The probe of ``router_url`` (None: no address given)."""
        if self.router_url is None:
            return None
        return RouterProbe(self.router_url, self.router_answer, fetch=self.router_fetch)


def _metrics(name: str, value: object) -> tuple[Metric, ...]:
    """``value`` as the metrics of an analysis, each with its own name."""
    if isinstance(value, Metric):
        value = (value,)
    if not isinstance(value, Sequence) or not all(isinstance(m, Metric) for m in value):
        raise ConfigError(name, value, "a sequence of zdd_swarm.canary.Metric")
    metrics = tuple(value)
    if len({m.name for m in metrics}) != len(metrics):
        raise ConfigError(name, [m.name for m in metrics], "metrics with distinct names")
    return metrics


@dataclass
class _Run:
    """One operation in flight: what it found, where it goes, how it ended."""

    pair: Pair
    target: Colour
    image: str | None
    old_image: str = ""
    """the active colour's image when the operation began (an analysis' ``{old_image}``)"""
    with_checks: bool = True
    held: str = ""
    """our lock on the pair (empty once given back)"""
    start: float = 0.0
    result: BlueGreenResult | None = None
    steps: list[str] = field(default_factory=list)
    switched_at: float | None = None
    switch_s: float | None = None
    switch_back_s: float | None = None
    rollout: RolloutResult | None = None
    checks: dict[str, CheckCount] = field(default_factory=dict)
    """stage -> the samples of its checks, and how many failed"""
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """stage -> how its analysis ended (``analysis_summary``)"""
    probed: str = ""
    """what the last look through the router's address said (empty: none)"""


class BlueGreen:
    """Blue-green releases of the apps of one engine, through one router."""

    def __init__(
        self,
        router: Router,
        controller: Controller,
        options: BlueGreenOptions | None = None,
        rollout: RolloutOptions | None = None,
    ) -> None:
        engine: Any = controller.engine
        self.engine: StackEngine = engine
        self.router = router
        self.controller = controller
        self.clock = controller.clock
        self.options = options or BlueGreenOptions()
        self.rollout = rollout or controller.options

    @classmethod
    def remembered(
        cls,
        app: str,
        controller: Controller,
        options: BlueGreenOptions | None = None,
        rollout: RolloutOptions | None = None,
    ) -> BlueGreen:
        """Blue-green on ``app`` through the router it was last deployed with
        (its address too, unless ``options`` give one; without ``options``, its
        scale-down delay too); ``InputError`` when the pair remembers none."""
        engine: Any = controller.engine
        pair = read_pair(engine, app)
        spec = pair.router
        if spec is None:
            raise InputError(
                f"{app}: the pair remembers no router (deployed before it was kept, or with "
                "a router of platform code): give --router (router=)"
            )
        router = parse_router(spec.router, app, engine, spec.service, controller)
        if options is None:
            delay = pair.scale_down_delay
            options = BlueGreenOptions()
            if delay is not None:
                options = replace(options, scale_down_delay=delay)
        if options.router_url is None and spec.url is not None:
            answer = spec.answer or "body"
            options = replace(options, router_url=spec.url, router_answer=answer)
        return cls(router, controller, options, rollout)

    # -- operations -----------------------------------------------------------

    def deploy(self, app: str, image: str) -> BlueGreenResult:
        """Release ``image`` to the idle colour of ``app`` and switch to it."""
        validate_image_reference(image)
        with self._locked(app, "deploy", image) as (pair, held):
            said = spec_of(self.router, self.options.router_url, self.options.router_answer)
            pair = remember(self.engine, pair, said, self.options.scale_down_delay)
            if pair.state.preview is not None:
                log.info("preview_replaced", app=app, colour=pair.state.preview.value)
            run = _Run(pair, pair.state.active.other, image, pair.active.image, held=held)
            return self._drive(run, Stage.ENSURE_IDLE)

    def promote(self, app: str) -> BlueGreenResult:
        """Switch to the colour awaiting promotion."""
        with self._locked(app, "promote") as (pair, held):
            if pair.state.preview is None:
                raise InputError(f"{app}: no colour awaits promotion")
            preview = pair.service(pair.state.preview)
            assert preview is not None
            run = _Run(pair, pair.state.preview, preview.image, pair.active.image, held=held)
            return self._drive(run, Stage.SWITCH)

    def rollback(self, app: str) -> BlueGreenResult:
        """Switch back to the standby colour (scaled up again if it was scaled down);
        a colour awaiting promotion is discarded instead."""
        with self._locked(app, "rollback") as (pair, held):
            state = pair.state
            if state.preview is not None:
                run = _Run(pair, state.preview, None, held=held, start=self.clock.monotonic())
                self._scale_down(run, state.preview, failed=False)
                discarded = self._end(
                    run,
                    BlueGreenOutcome.NOT_SWITCHED,
                    BlueGreenCode.PREVIEW_DISCARDED,
                    f"the preview on {state.preview.value} was discarded",
                )
                return self._record(discarded)
            standby = pair.service(state.active.other)
            assert standby is not None
            failed = (standby.spec.get("Labels") or {}).get(LABEL_FAILED)
            if failed and failed == standby.image:
                raise InputError(
                    f"{standby.name} holds {failed}, a release that failed: nothing to roll back to"
                )
            run = _Run(pair, state.active.other, None, with_checks=False, held=held)
            return self._drive(run, Stage.SCALE_UP)

    def status(self, app: str) -> Pair:
        """The pair as it is, checked (no change)."""
        return read_pair(self.engine, app)

    # -- the runner -------------------------------------------------------------

    def _prepare(self, app: str, operation: str, image: str | None) -> Pair:
        if not app or not app.strip():
            raise ConfigError("app", app, "an app name (its colours are <app>-blue, <app>-green)")
        if not self.engine.info().is_manager:
            raise NotAManager("the engine is not a swarm manager: point DOCKER_HOST at a manager")
        pair = read_pair(self.engine, app)
        if operation != "deploy":
            check_remembered(pair, self.router)  # another router: refused, nothing changed
        self.router.check()
        routed = self.router.active()
        if routed is not pair.state.active:
            raise InputError(
                f"{app}: the router sends traffic to {routed.value if routed else 'no one colour'}"
                f", the pair's state says {pair.state.active.value}: fix the router first"
            )
        probe = self.options.router_probe
        if probe is not None:
            ok, detail = probe.reaches(self._identities(pair, pair.state.active))
            if not ok:
                raise InputError(
                    f"{app}: requests through the router's address do not reach the active "
                    f"colour {pair.state.active.value} ({detail}): check --router-url and "
                    "--router-answer"
                )
        self._check_analyses(pair, operation, image)
        return pair

    def _check_analyses(self, pair: Pair, operation: str, image: str | None) -> None:
        """A first measurement of every metric the operation will take, before
        anything changes: an unreachable provider or a refused query raises
        ``MetricQueryError`` (the values are not judged: the colour is not up yet)."""
        metrics = list(self.options.post_switch_analysis)
        target = pair.state.preview
        if operation == "deploy":
            metrics[:0] = self.options.preview_analysis
            target = pair.state.active.other
        elif operation != "promote" or target is None:
            return
        if image is None and (view := pair.service(target)) is not None:
            image = view.image
        if metrics:
            check_metrics(
                metrics, QueryContext(target.service(pair.app), pair.active.image, image or "")
            )

    @contextlib.contextmanager
    def _locked(
        self, app: str, operation: str, image: str | None = None
    ) -> Iterator[tuple[Pair, str]]:
        """The checked pair, under its lock (given back at the end, whatever happens)."""
        pair = self._prepare(app, operation, image)
        with hold(self.engine, pair, operation, self.clock) as held:
            yield held

    def _drive(self, run: _Run, stage: Stage) -> BlueGreenResult:
        run.start = run.start or self.clock.monotonic()
        actions: dict[Stage, Callable[[_Run], bool]] = {
            Stage.ENSURE_IDLE: self._ensure_idle,
            Stage.SCALE_UP: self._scale_up,
            Stage.PREVIEW: self._preview,
            Stage.AWAIT_PROMOTE: self._await_promote,
            Stage.SWITCH: self._switch,
            Stage.VERIFY: self._verify,
            Stage.POST_SWITCH: self._post_switch,
            Stage.SCALE_DOWN_DELAY: self._scale_down_delay,
            Stage.SCALE_DOWN_OLD: self._scale_down_old,
            Stage.SWITCH_BACK: self._switch_back,
            Stage.SCALE_DOWN_IDLE: lambda r: self._scale_down(r, r.target, failed=True),
        }
        while stage is not Stage.DONE:
            try:
                ok = actions[stage](run)
            except ZddError as exc:
                ok = False
                self._stage_error(run, stage, exc)
            run.steps.append(stage.value)
            self._emit(run, stage, ok)
            stage = advance(stage, ok, auto_promote=self.options.auto_promote)
        assert run.result is not None
        run.result.active = run.pair.state.active
        run.result.switch_back_s = run.switch_back_s
        if run.result.outcome is BlueGreenOutcome.SWITCH_BACK_FAILED:
            run.result.active = self.router.active() or run.target
        run.result.duration_s = round(self.clock.monotonic() - run.start, 3)
        self._record(run.result)
        return run.result

    def _record(self, result: BlueGreenResult) -> BlueGreenResult:
        """Keep the result with the pair (``last``) for ``watch`` and ``status`` in
        other processes; written while the operation still holds the lock."""
        record(self.engine, result)
        return result

    def _stage_error(self, run: _Run, stage: Stage, exc: ZddError) -> None:
        """An error of the engine or the router at ``stage``."""
        log.warning("stage_failed", app=run.pair.app, stage=stage.value, error=str(exc))
        if stage is Stage.SWITCH_BACK:
            self._fail_switch_back(run, f"the switch back failed: {exc}")
        elif stage in (Stage.SCALE_DOWN_IDLE, Stage.SCALE_DOWN_OLD) and run.result is not None:
            note = f"; {stage.value} failed: {exc}"
            run.result.reason = Reason(run.result.reason.code, run.result.reason.message + note)
        else:
            self._failed(run, stage, f"{stage.value}: {exc}")

    def _emit(self, run: _Run, stage: Stage, ok: bool) -> None:
        detail = run.result.reason.message if run.result and not ok else ""
        counted = run.checks.get(stage.value, CheckCount())
        event = BlueGreenStage(
            run.pair.app,
            round(self.clock.monotonic() - run.start, 3),
            stage.value,
            run.target.value,
            ok,
            detail,
            samples=counted.samples,
            failed=counted.failed,
            analysis=run.analyses.get(stage.value),
        )
        log.info(event.name, app=run.pair.app, **event.fields())
        for hook in self.controller.hooks:
            try:
                hook(event)
            except Exception:
                log.exception("hook_failed", app=run.pair.app, hook=repr(hook))

    def _end(
        self, run: _Run, outcome: BlueGreenOutcome, code: BlueGreenCode, message: str
    ) -> BlueGreenResult:
        run.result = BlueGreenResult(
            run.pair.app,
            outcome,
            Reason(code.value, message),
            run.pair.state.active,
            run.target,
            image=run.image or "",
            duration_s=round(self.clock.monotonic() - run.start, 3),
            switch_s=run.switch_s,
            switch_back_s=run.switch_back_s,
            rollout=run.rollout,
            checks=run.checks,
            analyses=run.analyses,
            steps=run.steps,
        )
        return run.result

    def _failed(self, run: _Run, stage: Stage, why: str) -> None:
        """The release failed at ``stage``: before the switch it is not switched,
        after it is switched back (the outcome the later stages confirm)."""
        if stage in (Stage.ENSURE_IDLE, Stage.SCALE_UP, Stage.PREVIEW):
            code = BlueGreenCode.PREVIEW_CHECK_FAILED
            if stage is not Stage.PREVIEW:
                code = BlueGreenCode.IDLE_UNHEALTHY
            self._end(run, BlueGreenOutcome.NOT_SWITCHED, code, why)
        else:
            code = BlueGreenCode.POST_SWITCH_CHECK_FAILED
            if stage in (Stage.SWITCH, Stage.VERIFY):
                code = BlueGreenCode.SWITCH_NOT_EFFECTIVE
            self._end(run, BlueGreenOutcome.SWITCHED_BACK, code, why)

    def _fail_switch_back(self, run: _Run, why: str) -> None:
        before = run.result.reason.message if run.result else ""
        self._end(
            run,
            BlueGreenOutcome.SWITCH_BACK_FAILED,
            BlueGreenCode.SWITCH_BACK_FAILED,
            f"{why} (after: {before})" if before else why,
        )

    # -- stages ---------------------------------------------------------------------

    def _ensure_idle(self, run: _Run) -> bool:
        """Create the idle colour from the active one's spec, at 0 replicas."""
        if run.pair.service(run.target) is not None:
            return True
        active = run.pair.active.spec.get("Labels") or {}
        kept = {k: active[k] for k in (LABEL_ROUTER, LABEL_SCALE_DOWN_DELAY) if k in active}
        spec = colour_spec(
            run.pair.active.spec,
            run.pair.app,
            run.target,
            keep={**run.pair.state.labels(), **kept},
            routes=self.router.routes,
        )
        self.engine.create_service(spec)
        log.info("colour_created", app=run.pair.app, service=spec["Name"])
        services = {**run.pair.services, run.target: self.engine.inspect_service(spec["Name"])}
        run.pair = Pair(run.pair.app, services, run.pair.state)
        run.pair = write_state(self.engine, run.pair, run.pair.state.next())
        return True

    def _scale_up(self, run: _Run) -> bool:
        """The target colour gets the active spec (with the new image) and the
        active colour's replicas, watched like a rolling update."""
        pair, target = run.pair, run.target
        current = pair.service(target)
        assert current is not None
        replicas = replicas_of(pair.active.spec) or 1
        if run.image is None:  # a rollback: the standby's own spec, scaled up
            spec = dict(current.spec)
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        else:
            spec = colour_spec(
                pair.active.spec,
                pair.app,
                target,
                image=run.image,
                replicas=replicas,
                keep=ours(current.spec.get("Labels") or {}),
                routes=self.router.routes,
            )
        if run.image is None and current.replicas == replicas:
            return True
        result = self.controller.update(
            current.name, ServiceChange(patch=lambda _s: dict(spec)), self.rollout
        )
        run.rollout = result
        if result.outcome is Outcome.COMPLETED:
            # a rollout that replaced no task (the same template, scaled up)
            # completes at once: its new tasks are waited for here
            why = self._wait_running(current.id, replicas)
            if why is None:
                return True
        else:
            why = f"{result.outcome.value} ({result.code}): {result.reason.message}"
        self._end(
            run,
            BlueGreenOutcome.NOT_SWITCHED,
            BlueGreenCode.IDLE_UNHEALTHY,
            f"{current.name} did not come up healthy: {why}",
        )
        return False

    def _preview(self, run: _Run) -> bool:
        if not run.with_checks:
            return True
        verdict = self._checked(run, Stage.PREVIEW)
        if not verdict.ok:
            code, what = BlueGreenCode.PREVIEW_CHECK_FAILED, "preview check"
            if verdict.by_analysis:
                code, what = BlueGreenCode.ANALYSIS_FAILED, "preview analysis"
            self._end(
                run,
                BlueGreenOutcome.NOT_SWITCHED,
                code,
                f"{what} failed on {run.target.value}: {verdict.detail}",
            )
        return verdict.ok

    def _await_promote(self, run: _Run) -> bool:
        run.pair = write_state(self.engine, run.pair, run.pair.state.next(preview=run.target))
        self._end(
            run,
            BlueGreenOutcome.AWAITING_PROMOTE,
            BlueGreenCode.AWAITING_PROMOTE,
            f"{run.target.service(run.pair.app)} is up on its preview route; "
            f"`zdd-swarm bluegreen promote {run.pair.app}` switches to it",
        )
        return True

    def _switch(self, run: _Run) -> bool:
        run.switched_at = self.clock.monotonic()
        self.router.switch(run.target)
        due = self.clock.now() + self.options.scale_down_delay
        state = run.pair.state.next(active=run.target, preview=None, scale_down_at=due)
        run.pair = write_state(self.engine, run.pair, state)
        return True

    def _verify(self, run: _Run) -> bool:
        shown = self._shown(run, run.target)
        if self._wait(shown, self.options.switch_timeout):
            assert run.switched_at is not None
            run.switch_s = round(self.clock.monotonic() - run.switched_at, 3)
            return True
        self._end(
            run,
            BlueGreenOutcome.SWITCHED_BACK,
            BlueGreenCode.SWITCH_NOT_EFFECTIVE,
            f"the router did not show the switch to {run.target.value} within "
            f"{self.options.switch_timeout.total_seconds():g}s{run.probed}",
        )
        return False

    def _post_switch(self, run: _Run) -> bool:
        if not run.with_checks:
            return True
        verdict = self._checked(run, Stage.POST_SWITCH)
        if not verdict.ok:
            code, what = BlueGreenCode.POST_SWITCH_CHECK_FAILED, "post-switch check"
            if verdict.by_analysis:
                code, what = BlueGreenCode.ANALYSIS_FAILED, "post-switch analysis"
            self._end(
                run,
                BlueGreenOutcome.SWITCHED_BACK,
                code,
                f"{what} failed on {run.target.value}: {verdict.detail}; switched back",
            )
        return verdict.ok

    def _scale_down_delay(self, run: _Run) -> bool:
        code = BlueGreenCode.SWITCHED if run.with_checks else BlueGreenCode.ROLLED_BACK
        self._end(
            run,
            BlueGreenOutcome.SWITCHED,
            code,
            f"traffic goes to {run.target.service(run.pair.app)}"
            + (f" ({run.image})" if run.image else ""),
        )
        # the switch is settled: a rollback may come in meanwhile (its own lock);
        # the result is kept first, for a watch that outlives this process
        assert run.result is not None
        self._record(run.result)
        release(self.engine, run.pair.app, run.held)
        self.clock.sleep(self.options.scale_down_delay.total_seconds())
        return True

    def _scale_down_old(self, run: _Run) -> bool:
        """Scale the old colour to 0, unless another operation holds the pair
        or switched it meanwhile."""
        now = read_pair(self.engine, run.pair.app)
        if now.state.active is not run.target or now.state.seq != run.pair.state.seq:
            log.info("scale_down_skipped", app=run.pair.app, reason="the pair changed meanwhile")
            return True
        try:
            now = acquire(self.engine, now, run.held)
        except UpdateInProgress:
            log.info("scale_down_skipped", app=run.pair.app, reason="another operation holds it")
            return True
        old = now.service(run.target.other)
        assert old is not None
        self._set_replicas(old.name, 0, {})
        write_state(self.engine, now, now.state.next(scale_down_at=None))
        return True

    def _switch_back(self, run: _Run) -> bool:
        back = run.target.other
        called = self.clock.monotonic()
        self.router.switch(back)
        state = run.pair.state.next(active=back, preview=None, scale_down_at=None)
        run.pair = write_state(self.engine, run.pair, state)
        if not self._wait(self._shown(run, back), self.options.switch_timeout):
            self._fail_switch_back(
                run, f"the router did not show the switch back to {back.value}{run.probed}"
            )
            return False
        run.switch_back_s = round(self.clock.monotonic() - called, 3)
        return True

    def _scale_down(self, run: _Run, colour: Colour, *, failed: bool) -> bool:
        """Scale ``colour`` to 0; with ``failed``, mark its image as a failed release."""
        service = colour.service(run.pair.app)
        image = self.engine.inspect_service(service).image
        self._set_replicas(service, 0, {LABEL_FAILED: image} if failed and run.image else {})
        if run.pair.state.preview is colour:
            run.pair = write_state(self.engine, run.pair, run.pair.state.next(preview=None))
        return True

    # -- helpers ------------------------------------------------------------------------

    def _identities(self, pair: Pair, colour: Colour) -> frozenset[str]:
        view = self.engine.inspect_service(colour.service(pair.app))
        return identities(colour, view.image)

    def _shown(self, run: _Run, to: Colour) -> Callable[[], bool]:
        """Whether the router shows the switch to ``to``: by its own account and,
        with a ``router_url``, through its address (what it said is kept in ``run.probed``)."""
        probe = self.options.router_probe
        names = self._identities(run.pair, to) if probe is not None else frozenset()
        run.probed = ""

        def shown() -> bool:
            if not self.router.switched(to):
                return False
            if probe is None:
                return True
            ok, detail = probe.reaches(names)
            run.probed = f"; through its address: {detail}"
            return ok

        return shown

    def _set_replicas(self, service: str, replicas: int, labels: dict[str, str]) -> None:
        """Scale a colour (the task template is unchanged: no task restarts)."""
        set_replicas(self.engine, service, replicas, labels)

    def _wait_running(self, service_id: str, replicas: int) -> str | None:
        """Wait until ``replicas`` tasks of the service run (healthy); None
        when they do, else why not (a task deadline passed first)."""
        deadline = self.rollout.task_deadline or timedelta(seconds=300)
        running: list[TaskView] = []

        def up() -> bool:
            nonlocal running
            tasks = self.engine.list_tasks(service_id)
            running = [t for t in tasks if t.running and t.desired_state is TaskState.RUNNING]
            return len(running) >= replicas

        if self._wait(up, deadline):
            return None
        return (
            f"{len(running)} of {replicas} tasks running after "
            f"{deadline.total_seconds():g}s (task_deadline)"
        )

    def _wait(self, done: Callable[[], bool], limit: timedelta) -> bool:
        poll = self.rollout.poll_interval.total_seconds()
        deadline = self.clock.monotonic() + limit.total_seconds()
        while True:
            if done():
                return True
            if self.clock.monotonic() >= deadline:
                return False
            self.clock.sleep(poll)

    def _checked(self, run: _Run, stage: Stage) -> _Verdict:
        """Sample the checks of ``stage`` (and measure its analysis) through its
        window; the samples and failures of the checks, and how the analysis
        ended, are kept in the run (the result and the stage's event say them)."""
        gates, metrics = self.options.preview_checks, self.options.preview_analysis
        window = self.options.preview_window
        if stage is Stage.POST_SWITCH:
            gates, metrics = self.options.post_switch_checks, self.options.post_switch_analysis
            window = self.options.post_switch_window
        if not gates and not metrics:
            return _Verdict(True, "no checks")
        context = QueryContext(run.target.service(run.pair.app), run.old_image, run.image or "")
        analysis = AnalysisRun(metrics, self.clock.monotonic()) if metrics else None
        checks = _Checks(gates, analysis, context)
        verdict = self._sample(checks, window)
        if analysis is not None:
            run.analyses[stage.value] = analysis_summary(analysis.result())
        if not gates:
            return verdict
        counted = checks.count()
        run.checks[stage.value] = counted
        if not verdict.ok and not verdict.by_analysis and counted.failed:
            detail = (
                f"{verdict.detail} ({counted.failed} of {counted.samples} check requests failed)"
            )
            return _Verdict(False, detail)
        return verdict

    def _sample(self, checks: _Checks, window: timedelta) -> _Verdict:
        """Sample the checks every poll, and take the analysis' measurements as they
        fall due, until ``window`` is over and the analysis has ended. A check passes
        if its share of good samples reaches its ``min_success_ratio`` (one bad sample
        fails a check that needs them all, at once); the analysis passes if it ends
        successful (a failed or errored metric fails it at once)."""
        poll = self.rollout.poll_interval.total_seconds()
        end = self.clock.monotonic() + window.total_seconds()
        analysis = checks.analysis
        while True:
            failed = checks.sample()
            if failed:
                return _Verdict(False, failed)
            if analysis is not None:
                measure_due(analysis, checks.context, self.clock)
                if analysis.phase in (Phase.FAILED, Phase.ERROR):
                    return _Verdict(False, analysis.result().message, by_analysis=True)
            now = self.clock.monotonic()
            if now >= end and (analysis is None or analysis.phase.completed):
                break
            due = analysis.next_at() if analysis is not None else None
            self.clock.sleep(poll if due is None else max(0.0, min(poll, due - now)))
        failed = checks.ratios()
        if failed:
            return _Verdict(False, failed)
        if analysis is not None and analysis.phase is not Phase.SUCCESSFUL:
            return _Verdict(False, analysis.result().message, by_analysis=True)
        return _Verdict(True, "passed")


@dataclass(frozen=True)
class _Verdict:
    """How the checks (and analysis) of a stage ended."""

    ok: bool
    detail: str
    by_analysis: bool = False
    """the analysis failed it (not a check)"""


@dataclass
class _Checks:
    """The checks of one stage and their counts, and its analysis (if any)."""

    gates: Sequence[Gate]
    analysis: AnalysisRun | None
    context: QueryContext
    tally: dict[str, _Tally] = field(init=False)

    def __post_init__(self) -> None:
        self.tally = {g.name: _Tally() for g in self.gates}

    def sample(self) -> str | None:
        """Sample every check once; why one that needs every sample failed (None: none)."""
        for gate in self.gates:
            sample = gate.sample()
            self.tally[gate.name].add(sample.ok, sample.detail)
            if not sample.ok and gate.min_success_ratio >= 1.0:
                return f"{gate.name}: {sample.detail or 'failed'}"
        return None

    def ratios(self) -> str | None:
        """Why a check's share of good samples is below its ratio (None: none is)."""
        for gate in self.gates:
            counts = self.tally[gate.name]
            if counts.good / counts.samples < gate.min_success_ratio:
                return (
                    f"{gate.name}: {counts.good}/{counts.samples} samples passed "
                    f"(need {gate.min_success_ratio:.0%}); last: {counts.last or 'failed'}"
                )
        return None

    def count(self) -> CheckCount:
        tallies = self.tally.values()
        return CheckCount(sum(t.samples for t in tallies), sum(t.samples - t.good for t in tallies))


@dataclass
class _Tally:
    samples: int = 0
    good: int = 0
    last: str = ""

    def add(self, ok: bool, detail: str) -> None:
        self.samples += 1
        self.good += int(ok)
        self.last = self.last if ok else detail
