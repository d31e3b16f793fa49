"""The products of one data folder: initialise them, test the connections to everything apphub drives.

It reads what it needs from the stores each time (a changed password is used at the next step),
keeps created credentials in config.ini as secrets through the store (audited, versioned, the
actor `init`), and records every run in InitStatus. Products run in parallel, each product's
steps in order; a step that fails ends its product's run, and the steps after it are skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from apphub.audit.log import Actor, utc_now
from apphub.core import Core
from apphub.errors import ApphubError, NotFound
from apphub.reload.docker import ContainerEngine
from apphub.services.base import Check, CheckTimer, ContainerRunner, Product, ProductContext
from apphub.services.bundle import file_as_rendered
from apphub.services.cockpit import Cockpit
from apphub.services.gitea import Gitea
from apphub.services.http import ProductClient
from apphub.services.npm import NginxProxyManager
from apphub.services.portainer import Portainer
from apphub.services.status import InitStatus, ProductRun
from apphub.services.steps import RetryPolicy, StepResult, StepRunner
from apphub.sync.settings import SyncSettings
from apphub.sync.values import Values

logger = logging.getLogger("apphub.services")

INIT_ACTOR = Actor("init", "init")
PRODUCTS: dict[str, Callable[[ProductContext], Product]] = {
    "nginx_proxy_manager": NginxProxyManager, "gitea": Gitea, "portainer": Portainer, "cockpit": Cockpit,
}


@dataclass(frozen=True)
class ServicesSettings:
    """system.ini [services]."""

    enabled: tuple[str, ...]
    check_interval_s: float
    step_timeout_s: float
    step_attempts: int
    values: Mapping[str, Any]


class ServiceManager:
    """Initialises and checks the products of `core`'s data folder."""

    def __init__(self, core: Core, status: InitStatus, *, transport: httpx.BaseTransport | None = None,
                 run_in_container: ContainerRunner | None = None,
                 cockpit_conf: Callable[[], tuple[bool | None, str]] | None = None) -> None:
        """`transport`: how the HTTP clients connect (tests); `run_in_container`: default the engine of
        system.ini [sync] docker_url; `cockpit_conf`: whether cockpit.conf is as apphub renders it."""
        self.core = core
        self.status = status
        self.transport = transport
        self._run_in_container = run_in_container
        self.cockpit_conf = cockpit_conf or (lambda: file_as_rendered(core, "cockpit.conf"))
        self.stop = threading.Event()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        # told of every run that ended (the run as a dict, the state of the run before it): the notifications
        self.on_run: list[Callable[[Mapping[str, Any], str | None], None]] = []

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> ServicesSettings:
        values = Values(self.core.system.snapshot(), environ={})
        found = {key: values.get("services", key) for key in
                 ("enabled", "check_interval_s", "step_timeout_s", "step_attempts", "gitea_container",
                  "cockpit_host")}
        found["history_remote_url"] = values.get("history", "remote_url")
        found["history_remote_user"] = values.get("history", "remote_user")
        enabled = found["enabled"]
        names = tuple(enabled) if isinstance(enabled, list) else tuple(filter(None, str(enabled).split(",")))
        return ServicesSettings(names, float(str(found["check_interval_s"])), float(str(found["step_timeout_s"])),
                                int(str(found["step_attempts"])), found)

    def sync_settings(self) -> SyncSettings:
        return SyncSettings.from_system(self.core.system.snapshot())

    @staticmethod
    def check_known(names: Iterable[str]) -> None:
        """NotFound naming every name that is no product apphub knows."""
        unknown = [name for name in names if name not in PRODUCTS]
        if unknown:
            raise NotFound(f"no product named {', '.join(map(repr, unknown))}: apphub knows {', '.join(PRODUCTS)}")

    def product(self, name: str, settings: ServicesSettings | None = None) -> Product:
        self.check_known([name])
        settings = settings or self.settings()
        config = Values(self.core.config.snapshot(), environ=os.environ)
        section = {key: config.get(name, key) for key in self.core.schema.for_file("config").sections[name].keys}
        context = ProductContext(name, section, settings.values, self._client_factory(name, settings.step_timeout_s),
                                 self._save, self._container_runner(settings.step_timeout_s), self.cockpit_conf)
        return PRODUCTS[name](context)

    def _client_factory(self, product: str, timeout: float) -> Callable[..., ProductClient]:
        def client(base_url: str, secrets: Iterable[str] = ()) -> ProductClient:
            return ProductClient(product, base_url, timeout=timeout, secrets=secrets, transport=self.transport,
                                 stop=self.stop)
        return client

    def _container_runner(self, timeout: float) -> ContainerRunner:
        if self._run_in_container is not None:
            return self._run_in_container

        def run(container: str, command: list[str], *, user: str, shown: str,
                environment: Mapping[str, str]) -> tuple[int | None, str]:
            # The engine is looked up when a step runs a command (Gitea's admin), not for every product.
            engine = ContainerEngine(self.sync_settings().docker_url)
            exit_code, output = engine.run(container, command, timeout, user=user, shown=shown,
                                           environment=environment)
            return exit_code, output.decode("utf-8", "replace")
        return run

    def _save(self, file: str, values: Mapping[str, str]) -> None:
        store = self.core.config if file == "config" else self.core.system
        changes: dict[str, dict[str, Any]] = {}
        for dotted, value in values.items():
            section, key = dotted.split(".", 1)
            changes.setdefault(section, {})[key] = value
        store.update(changes, INIT_ACTOR, action="services.init",
                     message=f"first-start initialisation: {', '.join(values)}")

    # -- initialisation -----------------------------------------------------------------------

    def initialise(self, names: Iterable[str] | None = None, *, trigger: str = "api") -> dict[str, ProductRun]:
        """Run the initialisers of `names` (default: the enabled products) in parallel; their runs.
        A product whose run is under way already is not started twice (its current run is returned)."""
        settings = self.settings()
        wanted = list(settings.enabled if names is None else names)
        self.check_known(wanted)  # before anything starts; a product whose settings do not read fails alone
        if not wanted:
            return {}
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="apphub-init") as pool:
            runs = list(pool.map(lambda name: self._initialise_one(name, settings, trigger), wanted))
        return {run.service: run for run in runs}

    def _initialise_one(self, name: str, settings: ServicesSettings, trigger: str) -> ProductRun:
        """One product's run, unless one is under way already in this process or another (a CLI
        beside the server): then that run's current state."""
        with self._lock:
            busy = name in self._running
            if not busy:
                self._running.add(name)
        if busy:
            return self._current(name, trigger)
        try:
            with _product_lock(self.core.data.lock_dir / f"init-{name}.lock") as held:
                return self._run(name, settings, trigger) if held else self._current(name, trigger)
        finally:
            with self._lock:
                self._running.discard(name)

    def _current(self, name: str, trigger: str) -> ProductRun:
        return self.status.load().get(name) or ProductRun(name, name, trigger, [], "running")

    def _run(self, name: str, settings: ServicesSettings, trigger: str) -> ProductRun:
        previous = self.status.load().get(name)
        try:
            product = self.product(name, settings)
            steps = product.steps()
        except ApphubError as exc:  # a secret that does not decrypt, a key missing from config.ini
            run = ProductRun(name, name, trigger, [StepResult("settings", "read the product's settings",
                                                              "failed", 1, str(exc))], "failed")
            self.status.save(run)
            self._tell(run, previous)
            return run
        run = ProductRun(name, product.title, trigger, [StepResult(step.name, step.description) for step in steps],
                         "running", utc_now())
        if previous is not None and previous.state != "done" and trigger == "retry":
            run.attempt = previous.attempt + 1
        started = time.monotonic()
        runner = StepRunner(RetryPolicy(attempts=settings.step_attempts,
                                        budget=settings.step_timeout_s * settings.step_attempts * 2), self.stop)
        try:
            self.status.save(run)
            for step, result in zip(steps, run.steps, strict=True):
                runner.run(step, result, product.secrets, lambda: self.status.save(run))
                if result.state in ("failed", "manual"):
                    for skipped in run.steps[run.steps.index(result) + 1:]:
                        skipped.state = "skipped"
                        skipped.detail = f"not run: the step {result.name!r} did not succeed"
                    break
        finally:  # whatever happened, the run is never left `running`
            for result in run.steps:
                if result.state in ("pending", "running"):
                    result.state, result.detail = "skipped", "not run: the run was cut short"
            run.settle()
            run.finished_at = utc_now()
            run.duration_ms = round((time.monotonic() - started) * 1000, 1)
            self.status.save(run)
        self._tell(run, previous)
        return run

    def _tell(self, run: ProductRun, previous: ProductRun | None) -> None:
        """Each listener (notifications) hears of every run that ended, with the state of the one before."""
        for told in self.on_run:
            try:
                told(run.to_dict(), previous.state if previous is not None else None)
            except Exception:
                logger.exception("a listener of the initialisers failed")

    # -- connection tests ---------------------------------------------------------------------

    def check_products(self, names: Iterable[str] | None = None) -> list[Check]:
        settings = self.settings()
        wanted = list(settings.enabled if names is None else names)
        if not wanted:
            return []
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="apphub-check") as pool:
            return list(pool.map(lambda name: self._check_one(name, settings), wanted))

    def _check_one(self, name: str, settings: ServicesSettings) -> Check:
        try:
            return self.product(name, settings).check()
        except ApphubError as exc:
            return CheckTimer(name).result("unknown", reason=f"its settings cannot be read: {exc}")


@contextlib.contextmanager
def _product_lock(path: Path) -> Iterator[bool]:
    """An exclusive lock on `path` if nobody holds it (True), else False at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
