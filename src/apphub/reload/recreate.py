"""`container-recreate`: the only way a container sees new environment variables.

A container's env is fixed when it is created, so apphub creates a new one from the old one's
inspection: the same image, command, mounts, networks, ports, labels and host settings, the env
changed as asked, and the label `io.apphub.env` naming the variables apphub manages. The old one is
removed only once the new one is proven: renamed `{name}-apphub-old` (only `[a-z-]` is appended, so
the name stays valid), it waits until the caller's health gate says `keep()` or `undo()`. The new
one is created while the old one still runs (ports and addresses are taken at start, not at
create): a create the engine refuses costs no downtime. Then the old one stops, the new one starts.
undo() renames the new one `{name}-apphub-discard` and removes it only once the old one runs again.

Recovery at start (`Recreator.recover`), for every name with an aside or discarded container: an
aside container is a recreate never proven healthy, so the old one is always put back (a new one
with its name removed, whatever its state), a discarded one is removed, and the old one is started.
The sync engine then still sees the env differ and recreates again, with a health gate: safer than
keeping a container nobody checked. Started, because whether the old one ran before is recorded
nowhere, a service left down is the worse mistake, and a recreate starts it anyway (as `docker
compose up` does). A kill inside keep() thus undoes a proven recreate, which is then redone. Names
ending in those two suffixes are taken for apphub's; `recover(only=...)` limits it to some names.

Engine differences, seen on Podman 4.3.1 (compat API 1.41), the rest documented for Docker:
- Podman reports Ulimits as `RLIMIT_NOFILE`, which its create refuses ("invalid ulimit type"), and
  Devices with CgroupPermissions "" ("invalid device mode"): sent as `nofile` and `rwm`.
- Podman never reports IPAMConfig (null even with a static address): the address a running
  container has is kept as a static one (a stopped container reports none, so none is kept).
- Podman's HostConfig.NetworkMode is "bridge" for any bridge network (Docker: the network's name);
  the networks come from NetworkSettings.Networks. Both add the short id to Aliases (Docker before
  API 1.45): left out, the engine adds the new one's. Docker before API 1.44 takes one network at
  create: the others are connected before the start.
- Config.Hostname is the short id when none was set, the engine host's with host networking: left
  out (and Podman's HOSTNAME in Config.Env with it) so that the engine sets it again (Docker refuses
  a hostname with `container:` networking, and has with host networking).
- Anonymous volumes: Podman lists them by name in HostConfig.Binds; Docker only in Mounts (with
  Config.Volumes or a source-less HostConfig.Mounts entry). Each is carried over by name.
- Podman reports LogConfig as json-file with Config null whatever the options: the size limit is
  read from its libpod inspection. It adds HOME, TERM and container=podman to Config.Env (kept),
  drops Domainname at create, and a start it refuses while the container is `stopping`.
- Docker reports HostConfig.Links as "/db:/web/db" and takes "db:db".
- Rename works on running containers (both); names match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
- Engines quote env entries in errors (Podman create: `invalid environment variable: "=x"`; runc at
  start: `can't contain null(\\x00): "A=x\\x00y"`): every value of a managed name is masked.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import docker.errors
from pydantic import ConfigDict, Field, field_validator

from apphub.errors import BackendUnavailable, ReloadError
from apphub.reload.base import ActionSpec, ReloadFn
from apphub.reload.docker import ENV_LABEL, ContainerEngine, _describe_status, _for_service, _parse_state

log = logging.getLogger(__name__)

ASIDE_SUFFIX = "-apphub-old"
# The new container while undo() puts the old one back: a mark for recover() if apphub is killed then.
DISCARD_SUFFIX = "-apphub-discard"
MASK = "***"
# Shorter values are not masked: "1" or "on" would mask the engine's own words, and no secret is that short.
_MASK_MIN = 4
_ESCAPED = re.compile(r'[\x00-\x1f\x7f"\'\\]')
_RUNNING = frozenset({"running", "restarting", "paused"})
_RECOVERY_GRACE = 10


class ContainerRecreateAction(ActionSpec):
    """Recreate `container` with `env` set and `unset` removed (env values are never shown)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    strategy: Literal["container-recreate"]
    # a failed recreate put the old container back itself: a rollback does not recreate again
    undoes_itself: ClassVar[bool] = True
    container: str
    grace: int = Field(default=10, ge=0, le=600, description="Seconds of SIGTERM before SIGKILL for the old one")
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    unset: list[str] = Field(default_factory=list)

    @field_validator("env", "unset")
    @classmethod
    def _names(cls, value: Any) -> Any:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            if isinstance(value, dict) and "\0" in value[name]:
                raise ValueError(f"the value of {name} holds a NUL character, which no environment can")
        return value


@dataclass
class RecreateUndo:
    """The old container, kept aside until the new one is proven: `keep()` removes it, `undo()` puts it back."""

    _recreator: Recreator
    name: str
    old_id: str
    was_running: bool
    grace: int
    timeout: float
    new_id: str | None = None
    _settled: str | None = None

    def keep(self) -> None:
        """The new container is healthy: the old one is removed (not its volumes: the new one has them)."""
        self._settle("kept")
        self._recreator._remove(self.old_id, self.name + ASIDE_SUFFIX, self.timeout)
        log.info("container %s: recreated; the old container is removed", self.name)

    def undo(self) -> None:
        """The new container is not healthy: it is stopped and removed, the old one gets its name back
        and, if it ran before, is started; returns once it runs."""
        self._settle("undone")
        r, name = self._recreator, self.name
        if self.new_id is not None:
            # Renamed, not removed, until the old one runs: a kill in between leaves a mark for recover().
            r._stop(self.new_id, name, self.grace, self.timeout, quiet=True)
            r._rename(self.new_id, name, name + DISCARD_SUFFIX, self.timeout)
        r._rename(self.old_id, name + ASIDE_SUFFIX, name, self.timeout)
        if self.was_running:
            r._start_running(self.old_id, name, self.timeout)
        if self.new_id is not None:
            r._remove(self.new_id, name + DISCARD_SUFFIX, self.timeout)
            self.new_id = None
        log.info("container %s: the recreate is undone; the old container is back under its name", name)

    def _settle(self, how: str) -> None:
        if self._settled not in (None, how):
            raise ReloadError(f"container {self.name}: the recreate was already {self._settled}")
        self._settled = how


class Recreator:
    """Recreates containers on one engine, and puts back what an interrupted recreate left."""

    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine
        self._host: str | None = None  # the engine's hostname, once asked

    def recreate(self, container: str, env: Mapping[str, str], unset: Iterable[str], grace: int,
                 timeout: float) -> RecreateUndo:
        """Recreate `container` with `env` set and `unset` removed; returns once the new one has started.

        If the new one cannot be created or started, the old one is put back at once and ReloadError
        (BackendUnavailable when the engine is gone) says why; no message holds a value of `env`."""
        env, unset = dict(env), [name for name in unset if name not in env]
        attrs = self._inspect(container, container, timeout)
        name = str((attrs or {}).get("Name") or container).lstrip("/")
        if name.endswith((ASIDE_SUFFIX, DISCARD_SUFFIX)):
            raise ReloadError(f"container {name} is left from an unfinished recreate, not a service's")
        if self._recover_one(name) is not None:
            attrs = self._inspect(name, name, timeout)
        if attrs is None:
            raise ReloadError(f"container {container} does not exist")
        masks = _masks(attrs, env, unset)
        status = str((attrs.get("State") or {}).get("Status") or "")
        engine_host = ""
        if str((attrs.get("HostConfig") or {}).get("NetworkMode")) == "host":
            engine_host = self._engine_host(timeout)
        body, extra_networks = create_body(attrs, env, unset, self._image(attrs, timeout),
                                           podman=self.engine.is_podman, engine_host=engine_host)
        if self.engine.is_podman:
            self._podman_log_size(body, str(attrs["Id"]), name, timeout)
        undo = RecreateUndo(self, name, str(attrs["Id"]), status in _RUNNING, grace, timeout)
        log.info("container %s: recreating it with %d managed variables (%d unset); the old one waits as %s",
                 name, len(env), len(unset), name + ASIDE_SUFFIX)
        try:
            self._rename(undo.old_id, name, name + ASIDE_SUFFIX, timeout)
            with self.engine.client("create of the new container", timeout) as api:
                undo.new_id = str(api.create_container_from_config(body, name)["Id"])
            for network, endpoint in extra_networks.items():
                with self.engine.client(f"connecting the new container to network {network}", timeout) as api:
                    api.connect_container_to_network(undo.new_id, network, **_connect_options(endpoint))
            if undo.was_running:
                self._stop(undo.old_id, name + ASIDE_SUFFIX, grace, timeout)
            with self.engine.client("start of the new container", timeout, name) as api:
                api.start(undo.new_id)
        except (ReloadError, BackendUnavailable) as exc:
            cause = _mask(str(exc), masks)
            try:
                undo.undo()
                after = "the old container is back under its name" + (" and runs" if undo.was_running else "")
            except (ReloadError, BackendUnavailable) as again:
                after = (f"putting the old container back failed too ({_mask(str(again), masks)}); apphub puts"
                         " it back when it next starts")
            # When the engine's text quoted a value, the original is not chained: a traceback would show it.
            raise type(exc)(f"recreate of container {name}: {cause}; {after}") from (None if cause != str(exc) else exc)
        return undo

    def _engine_host(self, timeout: float) -> str:
        """The engine's machine's hostname (`GET /info`), asked once: the call costs Podman about
        200 ms, as much as the rest of a recreate's engine calls together."""
        if self._host is None:
            with self.engine.client("engine information", timeout) as api:
                self._host = str(api.info().get("Name") or "")
        return self._host

    def recover(self, only: Iterable[str] | None = None) -> list[str]:
        """Put back every container an interrupted recreate left aside; one line per container acted on.

        `only`: the container names to look at (default: every one on the engine; an engine shared
        with other apphubs, as in tests, needs it)."""
        with self.engine.client("listing containers", self.engine.timeout) as api:
            found = [str(n).lstrip("/") for entry in api.containers(all=True, filters={"name": "-apphub-"})
                     for n in entry.get("Names") or []]
        names = {n.removesuffix(ASIDE_SUFFIX).removesuffix(DISCARD_SUFFIX) for n in found
                 if n.endswith((ASIDE_SUFFIX, DISCARD_SUFFIX))}
        lines: list[str] = []
        failures: list[str] = []
        for name in sorted(names if only is None else names & set(only)):
            try:
                line = self._recover_one(name)
            except (ReloadError, BackendUnavailable) as exc:
                failures.append(str(exc))
            else:
                lines += [line] if line else []
        if failures:
            raise ReloadError("recovery of interrupted recreates: " + "; ".join(failures))
        return lines

    # -- steps --------------------------------------------------------------------------------------

    def _recover_one(self, name: str) -> str | None:
        timeout = self.engine.timeout
        old = self._inspect(name + ASIDE_SUFFIX, name + ASIDE_SUFFIX, timeout)
        discarded = self._inspect(name + DISCARD_SUFFIX, name + DISCARD_SUFFIX, timeout)
        if old is None and discarded is None:
            return None
        current = self._inspect(name, name, timeout)
        how = "the new one is removed: apphub was stopped while it undid the recreate"
        if old is not None:
            if current is None:
                how = "no container had its name"
            else:
                status = str((current.get("State") or {}).get("Status") or "")
                why = "it had started but was never proven healthy" if status in _RUNNING else "it had not started"
                how = f"the new one ({status}) is removed: {why}"
                self._stop(str(current["Id"]), name, _RECOVERY_GRACE, timeout, quiet=True)
                self._remove(str(current["Id"]), name, timeout)
            self._rename(str(old["Id"]), name + ASIDE_SUFFIX, name, timeout)
            current = old
        if discarded is not None:
            if current is None:  # the old one is gone (not by apphub): the new one is the only copy left
                self._rename(str(discarded["Id"]), name + DISCARD_SUFFIX, name, timeout)
                current, how = discarded, "the old one was gone, the new one is kept"
            else:
                self._remove(str(discarded["Id"]), name + DISCARD_SUFFIX, timeout)
        assert current is not None
        self._start_running(str(current["Id"]), name, timeout)
        line = f"container {name}: an interrupted recreate is undone, the old container is back and runs ({how})"
        log.warning("%s", line)
        return line

    def _inspect(self, ref: str, shown: str, timeout: float) -> dict[str, Any] | None:
        with self.engine.client(f"inspect of container {shown}", timeout) as api:
            try:
                return dict(api.inspect_container(ref))
            except docker.errors.NotFound:
                return None

    def _image(self, attrs: dict[str, Any], timeout: float) -> str:
        """The image the old container runs: by its configured name while that still names it, else by ID."""
        running, configured = str(attrs.get("Image") or ""), str((attrs.get("Config") or {}).get("Image") or "")
        if not configured or not running:
            return configured or running
        try:
            with self.engine.client(f"inspect of image {configured}", timeout) as api:
                found = str(api.inspect_image(configured).get("Id") or "")
        except ReloadError:
            return running
        return configured if found.removeprefix("sha256:") == running.removeprefix("sha256:") else running

    def _podman_log_size(self, body: dict[str, Any], ref: str, shown: str, timeout: float) -> None:
        """The log size limit, which Podman's compat inspection leaves out, from its libpod one."""
        with self.engine.client(f"libpod inspect of container {shown}", timeout) as api:
            response = api.get(f"{api.base_url}/v4.0.0/libpod/containers/{ref}/json", timeout=timeout)
        size = str(((response.json().get("HostConfig") or {}).get("LogConfig") or {}).get("Size") or "") \
            if response.ok else ""
        if size not in ("", "0", "0B", "-1", "-1B"):
            log_config = body["HostConfig"].get("LogConfig") or {}
            body["HostConfig"]["LogConfig"] = {**log_config, "Config": {**(log_config.get("Config") or {}),
                                                                        "max-size": size}}

    def _rename(self, ref: str, shown: str, to: str, timeout: float) -> None:
        with self.engine.client(f"rename of container {shown} to {to}", timeout, shown) as api:
            if str(api.inspect_container(ref).get("Name") or "").lstrip("/") != to:  # done before a retry
                api.rename(ref, to)

    def _stop(self, ref: str, shown: str, grace: int, timeout: float, quiet: bool = False) -> None:
        """Stop with SIGTERM, SIGKILL after `grace` s (gracefully: the volumes are shared). `quiet`: a
        failure is only logged, as the container is removed next anyway."""
        try:
            with self.engine.client(f"stop of container {shown}", timeout, shown, waited=timeout + grace) as api:
                if str(api.inspect_container(ref)["State"].get("Status")) == "paused":
                    api.unpause(ref)
                api.stop(ref, timeout=grace)
        except ReloadError as exc:
            if not quiet:
                raise
            log.info("container %s: %s; it is removed by force", shown, exc)

    def _remove(self, ref: str, shown: str, timeout: float) -> None:
        with self.engine.client(f"removal of container {shown}", timeout) as api, \
                contextlib.suppress(docker.errors.NotFound):
            api.remove_container(ref, v=False, force=True)  # never its volumes: the other container has them

    def _start_running(self, ref: str, shown: str, timeout: float) -> None:
        """Start the container unless it runs, and return once it runs (one it stops now is waited for:
        Podman refuses to start a `stopping` container, "container state improper")."""
        deadline, started = time.monotonic() + timeout, False
        while True:
            attrs = self._inspect(ref, shown, timeout)
            if attrs is None:
                raise ReloadError(f"container {shown} disappeared while it was being started")
            state = _parse_state(shown, attrs.get("State") or {})
            if state.running:
                return
            if state.status in ("created", "exited", "stopped", "dead", "configured"):
                if started:
                    raise ReloadError(f"container {shown} was started but is {_describe_status(state)}")
                with self.engine.client(f"start of container {shown}", timeout, shown) as api:
                    api.start(ref)
                started = True
            elif time.monotonic() > deadline:
                raise ReloadError(f"container {shown} did not start within {timeout:g} s: it is {state.status}")
            else:
                time.sleep(0.05)


def create_body(attrs: dict[str, Any], env: Mapping[str, str], unset: Iterable[str], image: str, *,
                podman: bool = False, engine_host: str = "") -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The create body of a container like the inspected one but for its env, and the networks to
    connect after the create (an engine before API 1.44 takes one at create). `engine_host`: the
    hostname of the engine's machine, which a host-networked container was given."""
    old_id = str(attrs.get("Id") or "")
    config: dict[str, Any] = copy.deepcopy(attrs.get("Config") or {})
    host: dict[str, Any] = copy.deepcopy(attrs.get("HostConfig") or {})
    mode = str(host.get("NetworkMode") or "")
    own_network = mode not in ("host", "none") and not mode.startswith(("container:", "ns:"))
    hostname = str(config.get("Hostname") or "")
    generated = (hostname == old_id[:12] or (mode == "host" and hostname == engine_host)
                 or mode.startswith("container:"))
    if generated:
        config.pop("Hostname", None)
    config["Env"] = _new_env(config.get("Env") or [], env, set(unset), hostname if generated else None)
    config["Labels"] = {**(config.get("Labels") or {}), ENV_LABEL: ",".join(sorted(env))}
    config["Image"] = image
    host["Binds"], host["Mounts"] = _volumes(attrs, host)
    if host.get("Ulimits"):
        host["Ulimits"] = [{**u, "Name": str(u.get("Name") or "").removeprefix("RLIMIT_").lower()}
                           for u in host["Ulimits"]]
    if host.get("Devices"):
        host["Devices"] = [{**d, "CgroupPermissions": d.get("CgroupPermissions") or "rwm"} for d in host["Devices"]]
    host["Links"] = _links(host.get("Links"))
    endpoints = _endpoints(attrs, podman) if own_network else {}
    body: dict[str, Any] = {**config, "HostConfig": host}
    primary = mode if mode in endpoints else "bridge" if mode == "default" and "bridge" in endpoints else None
    primary = primary or next(iter(sorted(endpoints)), None)
    if primary is not None:
        body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints.pop(primary)}}
    return body, endpoints


def _new_env(entries: list[str], env: Mapping[str, str], unset: set[str], hostname: str | None) -> list[str]:
    result, written = [], set()
    for entry in entries:
        name = entry.partition("=")[0]
        if name in env:
            if name not in written:
                result.append(f"{name}={env[name]}")
                written.add(name)
        elif name in unset or (hostname is not None and entry == f"HOSTNAME={hostname}"):
            continue
        else:
            result.append(entry)
    return result + [f"{name}={env[name]}" for name in sorted(env) if name not in written]


def _volumes(attrs: dict[str, Any], host: dict[str, Any]) -> tuple[list[str] | None, list[dict[str, Any]] | None]:
    """Binds and Mounts with every volume the container has by name (an anonymous one included)."""
    named = {str(m.get("Destination")): m for m in attrs.get("Mounts") or []
             if m.get("Type") == "volume" and m.get("Name")}
    binds, covered = [], set()
    for bind in host.get("Binds") or []:
        parts = str(bind).split(":")
        target = parts[1] if len(parts) > 1 else parts[0]
        if len(parts) == 1 and target in named:
            bind = f"{named[target]['Name']}:{target}"
        covered.add(target)
        binds.append(bind)
    mounts = [dict(m) for m in host.get("Mounts") or []]
    for mount in mounts:
        target = str(mount.get("Target"))
        covered.add(target)
        if mount.get("Type") == "volume" and not mount.get("Source") and target in named:
            mount["Source"] = named[target]["Name"]
    for target, volume in named.items():
        if target not in covered:
            binds.append(f"{volume['Name']}:{target}" + ("" if volume.get("RW", True) else ":ro"))
    return binds or None, mounts or None


def _links(links: Any) -> list[str] | None:
    """Docker's inspected form "/db:/web/alias" as create takes it, "db:alias"."""
    pairs = [str(link).partition(":")[::2] for link in links or []]
    return [f"{target.lstrip('/')}:{alias.rsplit('/', 1)[-1] or target.lstrip('/')}" for target, alias in pairs] or None


def _endpoints(attrs: dict[str, Any], podman: bool) -> dict[str, dict[str, Any]]:
    old_id = str(attrs.get("Id") or "")
    found = {}
    for network, endpoint in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items():
        endpoint = endpoint or {}
        ipam = endpoint.get("IPAMConfig") or None
        if ipam is None and podman:
            addresses = (("IPv4Address", endpoint.get("IPAddress")), ("IPv6Address", endpoint.get("GlobalIPv6Address")))
            ipam = {key: value for key, value in addresses if value} or None
        aliases = [a for a in endpoint.get("Aliases") or [] if a not in (old_id, old_id[:12])]
        found[str(network)] = {"Aliases": aliases or None, "IPAMConfig": ipam, "Links": _links(endpoint.get("Links")),
                               "DriverOpts": endpoint.get("DriverOpts") or None}
    return found


def _connect_options(endpoint: dict[str, Any]) -> dict[str, Any]:
    ipam = endpoint.get("IPAMConfig") or {}
    return {"aliases": endpoint.get("Aliases"), "links": endpoint.get("Links"),
            "ipv4_address": ipam.get("IPv4Address"), "ipv6_address": ipam.get("IPv6Address"),
            "link_local_ips": ipam.get("LinkLocalIPs"), "driver_opt": endpoint.get("DriverOpts")}


def _masks(attrs: dict[str, Any], env: Mapping[str, str], unset: Iterable[str]) -> list[str]:
    """The values that may be secrets: the new ones, and the old ones of every name apphub manages."""
    config = attrs.get("Config") or {}
    managed = set(env) | set(unset) | set(str((config.get("Labels") or {}).get(ENV_LABEL) or "").split(","))
    old = [entry.partition("=")[2] for entry in config.get("Env") or [] if entry.partition("=")[0] in managed]
    # An engine quotes a value escaped (runc: "A=x\x00y"): the runs between characters that get escaped are masked too.
    spellings = {part for value in [*env.values(), *old] for part in [value, *_ESCAPED.split(value)]}
    return sorted({part for part in spellings if len(part) >= _MASK_MIN}, key=len, reverse=True)


def _mask(text: str, masks: list[str]) -> str:
    for value in masks:
        text = text.replace(value, MASK)
    return text


def recreate_strategies(engine: ContainerEngine) -> dict[str, ReloadFn]:
    """The reload callable `container-recreate` on `engine`; it returns the RecreateUndo."""
    recreator = Recreator(engine)

    def recreate(service: str, action: ActionSpec) -> RecreateUndo:
        assert isinstance(action, ContainerRecreateAction), action
        with _for_service(service, action.strategy):
            return recreator.recreate(action.container, action.env, action.unset, action.grace, action.timeout)

    return {"container-recreate": recreate}
