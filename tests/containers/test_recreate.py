"""`container-recreate` against a real engine (Podman's Docker-compatible socket).

A recreated container keeps every setting but the env (compared field by field with the old one's
inspection), a new one that fails is undone, the old one is removed only by keep(), and recover()
puts back what a killed apphub left, from hand-built states and from real SIGKILLs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.types
import pytest
from pydantic import ValidationError

from apphub.errors import ReloadError
from apphub.reload.base import Reloaders
from apphub.reload.docker import ENV_LABEL, ContainerEngine, env_of
from apphub.reload.recreate import (
    ASIDE_SUFFIX,
    DISCARD_SUFFIX,
    ContainerRecreateAction,
    RecreateUndo,
    Recreator,
    recreate_strategies,
)
from tests.conftest import free_port
from tests.containers.conftest import EXIT_ON_TERM, Containers, PodmanService, wait_for

SECRET = "s3cr3t-VALUE"
# PID 1 stops at once on SIGTERM; MODE=bad makes it exit 1 as soon as it starts.
SCRIPT = f"{EXIT_ON_TERM}; [ \"$MODE\" = bad ] && exit 1; while true; do sleep 0.1; done"


@dataclass
class World:
    """The test's containers (named through `containers`, so removed at the end), their aside
    containers, and the networks and volumes a rich container needs, all removed at the end."""

    containers: Containers
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def api(self) -> docker.APIClient:
        return self.containers.client.api

    def simple(self, mode: str = "old", network: str = "host") -> str:
        """A running container of SCRIPT with MODE=mode."""
        name = f"{self.containers.prefix}-{uuid.uuid4().hex[:6]}"
        self.containers.names.append(name)
        self.api.create_container(self.containers.image, ["sh", "-c", SCRIPT], name=name,
                                  environment={"MODE": mode, "KEEP": "kept"},
                                  host_config=self.api.create_host_config(network_mode=network))
        self.api.start(name)
        return name

    def network(self) -> tuple[str, str]:
        """A bridge network of our own, on a subnet no other network here uses; (name, subnet prefix)."""
        for _ in range(20):
            prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
            name = f"apphub-rc-{uuid.uuid4().hex[:8]}"
            try:
                self.containers.client.networks.create(name, driver="bridge", ipam=docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=f"{prefix}.0/24")]))
            except docker.errors.APIError:
                continue
            self.networks.append(name)
            return name, prefix
        pytest.fail("no free subnet for a test network")

    def names(self, name: str) -> list[str]:
        """Every container whose name is `name` or its aside name."""
        found = self.api.containers(all=True, filters={"name": name})
        names = {n.lstrip("/") for entry in found for n in entry["Names"]}
        return sorted(names & {name, name + ASIDE_SUFFIX, name + DISCARD_SUFFIX})

    def settled(self, name: str) -> dict[str, str]:
        """The state of `name` and its aside containers once the engine has finished what it was
        doing. A killed client's last request (a rename, a stop) goes on in the engine after the
        client is gone, so a name listed a moment ago may be renamed before it is inspected."""
        before: dict[str, str] | None = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                now = {each: self.api.inspect_container(each)["State"]["Status"] for each in self.names(name)}
            except docker.errors.NotFound:
                now = None
            if now is not None and now == before and "stopping" not in now.values():
                return now
            before = now
            time.sleep(0.2)
        raise AssertionError(f"the containers of {name} did not settle in 15 s: {before}")

    def cleanup(self) -> None:
        anonymous: set[str] = set()
        for name in self.containers.names:
            for each in (name, name + ASIDE_SUFFIX, name + DISCARD_SUFFIX):
                with contextlib.suppress(docker.errors.NotFound):
                    mounts = self.api.inspect_container(each)["Mounts"]
                    anonymous |= {m["Name"] for m in mounts if m["Type"] == "volume"}
                    self.api.remove_container(each, force=True)
        for volume in [*anonymous, *self.volumes]:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_volume(volume, force=True)
        for network in self.networks:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_network(network)


@pytest.fixture
def world(containers: Containers) -> Iterator[World]:
    made = World(containers)
    try:
        yield made
    finally:
        made.cleanup()


def running(world: World, name: str) -> bool:
    return bool(world.api.inspect_container(name)["State"]["Running"])


def exec_env(world: World, name: str) -> dict[str, str]:
    """The env the container's PID 1 has (its /proc/1/environ, read through exec)."""
    output = world.containers.output(name, "cat", "/proc/1/environ")
    return dict(entry.split("=", 1) for entry in output.split("\0") if "=" in entry)


# -- everything but the env is kept -----------------------------------------------------------------

def rich_container(world: World, tmp_path: Any) -> tuple[str, str]:
    """A container with most options a service has; (name, its Compose project)."""
    network, prefix = world.network()
    second, _ = world.network()
    volume = f"apphub-rc-{uuid.uuid4().hex[:8]}"
    world.api.create_volume(volume)
    world.volumes.append(volume)
    (tmp_path / "bind").mkdir()
    project = f"apphub-rc-{uuid.uuid4().hex[:6]}"
    name = f"{world.containers.prefix}-rich-{uuid.uuid4().hex[:6]}"
    world.containers.names.append(name)
    api = world.api
    api.create_container(
        world.containers.image, ["-c", SCRIPT], entrypoint=["/bin/sh"], name=name, hostname="web-host",
        user="0:10", working_dir="/tmp", ports=[8080], stdin_open=True, tty=True, stop_signal="SIGTERM",
        stop_timeout=7,
        volumes=["/anon"], environment={"MODE": "old", "KEEP": "kept", "OLD": "gone-soon", "SECRET_A": "old-value"},
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "web",
                "com.docker.compose.oneoff": "False", "com.docker.compose.container-number": "1", "custom": "yes"},
        healthcheck={"test": ["CMD-SHELL", "true"], "interval": 30_000_000_000, "retries": 2},
        host_config=api.create_host_config(
            binds=[f"{tmp_path / 'bind'}:/data:ro", f"{volume}:/named"],
            port_bindings={8080: ("127.0.0.1", free_port())},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
            cap_add=["NET_ADMIN"], cap_drop=["MKNOD"], extra_hosts={"db.local": "10.1.2.3"}, dns=["10.0.0.53"],
            log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m"}),
            tmpfs={"/run/x": "size=1m"}, shm_size="16m", init=True, devices=["/dev/zero:/dev/myzero:rwm"],
            security_opt=["no-new-privileges"], network_mode=network),
        networking_config=api.create_networking_config({network: api.create_endpoint_config(
            aliases=["web-alias"], ipv4_address=f"{prefix}.50")}),
    )
    api.connect_container_to_network(name, second, aliases=["web-second"])
    api.start(name)
    assert running(world, name)
    assert world.containers.output(name, "sh", "-c", "echo keep-me > /anon/file; cat /anon/file").strip() == "keep-me"
    return name, project


# What the engine makes anew for any new container, so that it differs from the old one's.
REGENERATED = {
    "Id": "the new container's",
    "Created": "when the new one was created",
    "State": "the new one's (running since the recreate)",
    "ResolvConfPath": "a file in the container's own folder, named by its id",
    "HostnamePath": "a file in the container's own folder, named by its id",
    "HostsPath": "a file in the container's own folder, named by its id",
    "LogPath": "a file in the container's own folder, named by its id",
    "GraphDriver": "the new container's own writable layer",
    "RestartCount": "restarts of that container by its restart policy",
    "ExecIDs": "commands run in the old one (the test's exec)",
    "NetworkSettings.SandboxKey": "the new container's own network namespace",
    "NetworkSettings.SandboxID": "the new container's own network namespace",
    "NetworkSettings.Networks.*.MacAddress": "generated for each new endpoint",
    "NetworkSettings.Networks.*.EndpointID": "a new endpoint",
}


def comparable(attrs: dict[str, Any]) -> dict[str, Any]:
    """The inspection without what REGENERATED lists and the env; the engine's own alias (the
    short id) and the apphub label out, mounts in a stable order."""
    kept = {key: value for key, value in attrs.items() if key not in REGENERATED}
    config = dict(kept["Config"])
    config.pop("Env")
    config["Labels"] = {k: v for k, v in config["Labels"].items() if k != ENV_LABEL}
    kept["Config"] = config
    kept["Mounts"] = sorted(kept["Mounts"], key=lambda mount: mount["Destination"])
    settings = {k: v for k, v in kept["NetworkSettings"].items() if f"NetworkSettings.{k}" not in REGENERATED}
    settings["Networks"] = {
        network: {**{k: v for k, v in endpoint.items() if f"NetworkSettings.Networks.*.{k}" not in REGENERATED},
                  "Aliases": [a for a in endpoint["Aliases"] or [] if a != attrs["Id"][:12]]}
        for network, endpoint in settings["Networks"].items()
    }
    kept["NetworkSettings"] = settings
    return kept


def libpod_log_size(podman_service: PodmanService, name: str) -> str:
    result = podman(podman_service, "inspect", "--format", "{{.HostConfig.LogConfig.Size}}", name)
    return result.stdout.strip()


def podman(podman_service: PodmanService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=podman_service.environment, capture_output=True, text=True,
                          timeout=30, check=False)


def test_recreate_keeps_everything_but_the_env(engine: ContainerEngine, world: World, tmp_path: Any,
                                               podman_service: PodmanService) -> None:
    name, project = rich_container(world, tmp_path)
    before = world.api.inspect_container(name)
    # The options took (else the comparison below would prove little).
    config, host, networks = before["Config"], before["HostConfig"], before["NetworkSettings"]["Networks"]
    assert (config["Tty"], config["StopTimeout"], config["Hostname"], host["Init"], host["CapAdd"]) == \
        (True, 7, "web-host", True, ["NET_ADMIN"])
    assert sorted(alias for endpoint in networks.values() for alias in endpoint["Aliases"]
                  if alias != before["Id"][:12]) == ["web-alias", "web-second"]
    assert [endpoint["IPAddress"].endswith(".50") for endpoint in networks.values()].count(True) == 1
    assert {mount["Destination"] for mount in before["Mounts"]} == {"/anon", "/data", "/named"}
    log_size = libpod_log_size(podman_service, name)
    assert log_size == "1MB"

    undo = Recreator(engine).recreate(name, {"MODE": "new", "SECRET_A": SECRET}, ["OLD"], grace=5, timeout=30)
    after = world.api.inspect_container(name)

    assert after["Id"] != before["Id"]
    assert after["State"]["Running"]
    assert comparable(after) == comparable(before)
    assert env_of(after) == {**{k: v for k, v in env_of(before).items() if k != "OLD"}, "MODE": "new",
                             "SECRET_A": SECRET}
    assert after["Config"]["Labels"][ENV_LABEL] == "MODE,SECRET_A"
    assert libpod_log_size(podman_service, name) == log_size  # Podman's inspect does not show it: see recreate.py
    seen = exec_env(world, name)
    assert (seen["MODE"], seen["SECRET_A"], seen["KEEP"], "OLD" in seen) == ("new", SECRET, "kept", False)
    assert world.containers.output(name, "cat", "/anon/file").strip() == "keep-me"
    # The old one waits aside, stopped, until keep().
    assert world.names(name) == [name, name + ASIDE_SUFFIX]
    assert not running(world, name + ASIDE_SUFFIX)

    undo.keep()

    assert world.names(name) == [name]
    listed = world.api.containers(all=True, filters={"label": f"com.docker.compose.project={project}"})
    assert [entry["Id"] for entry in listed] == [after["Id"]]  # what `docker compose ps` lists
    assert world.containers.output(name, "cat", "/anon/file").strip() == "keep-me"


def test_a_container_without_a_hostname_gets_its_own(engine: ContainerEngine, world: World) -> None:
    network, _ = world.network()
    name = world.simple(network=network)  # the conftest's host network is replaced: the hostname is the short id
    old_id = world.api.inspect_container(name)["Id"]

    Recreator(engine).recreate(name, {"MODE": "new"}, [], grace=5, timeout=30).keep()

    after = world.api.inspect_container(name)
    assert after["Config"]["Hostname"] == after["Id"][:12] != old_id[:12]
    assert env_of(after)["HOSTNAME"] == after["Id"][:12]
    assert world.containers.output(name, "cat", "/etc/hostname").strip() == after["Id"][:12]


# -- a new container that fails is undone -----------------------------------------------------------

def test_a_new_container_that_exits_at_once_is_undone(engine: ContainerEngine, world: World) -> None:
    name = world.simple()
    old = world.api.inspect_container(name)
    action = ContainerRecreateAction(strategy="container-recreate", container=name, env={"MODE": "bad"}, grace=5)

    undo = Reloaders(recreate_strategies(engine)).run("web", action)
    assert isinstance(undo, RecreateUndo)
    wait_for(lambda: not running(world, name), "the new container to exit")
    assert world.api.inspect_container(name)["State"]["ExitCode"] == 1

    undo.undo()

    back = world.api.inspect_container(name)
    assert back["Id"] == old["Id"]
    assert back["State"]["Running"]
    assert env_of(back)["MODE"] == "old"
    assert exec_env(world, name)["MODE"] == "old"
    assert world.names(name) == [name]
    undo.undo()  # a second undo changes nothing
    with pytest.raises(ReloadError, match="already undone"):
        undo.keep()


def test_a_create_the_engine_refuses_leaves_the_old_one_running(engine: ContainerEngine, world: World) -> None:
    name = world.simple()
    old = world.api.inspect_container(name)

    # Only the engine refuses this (the action's validation would): Podman quotes the entry, value included.
    with pytest.raises(ReloadError) as caught:
        Recreator(engine).recreate(name, {"": SECRET}, [], grace=5, timeout=30)

    message = str(caught.value)
    assert f"recreate of container {name}: create of the new container" in message
    assert "the old container is back under its name and runs" in message
    assert SECRET not in message
    assert "***" in message
    back = world.api.inspect_container(name)
    assert back["Id"] == old["Id"]
    assert back["State"]["Running"]
    assert back["State"]["StartedAt"] == old["State"]["StartedAt"]  # never stopped
    assert world.names(name) == [name]


def test_a_start_failure_is_undone_and_no_message_or_log_holds_the_value(
    engine: ContainerEngine, world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    name = world.simple()
    old = world.api.inspect_container(name)

    # runc refuses a NUL in a value at the start and quotes the entry, escaped: "MODE=x\\x00s3cr3t-VALUE".
    # (The action refuses such a value before any recreate: see the next test.)
    with pytest.raises(ReloadError) as caught:
        Recreator(engine).recreate(name, {"MODE": f"x\0{SECRET}"}, [], grace=5, timeout=30)

    texts = [str(caught.value), repr(caught.value)]
    cause: BaseException | None = caught.value
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    assert f"recreate of container {name}: start of the new container" in texts[0]
    assert "OCI runtime error" in texts[0]  # the engine's reason, its quote of the value masked
    assert not [text for text in texts if SECRET in text]
    assert not [record for record in caplog.records if SECRET in record.getMessage()]
    back = world.api.inspect_container(name)
    assert back["Id"] == old["Id"]
    assert back["State"]["Running"]
    assert env_of(back)["MODE"] == "old"
    assert world.names(name) == [name]


def test_the_action_never_shows_an_env_value() -> None:
    action = ContainerRecreateAction(strategy="container-recreate", container="web", env={"TOKEN": SECRET})
    assert SECRET not in repr(action)
    assert SECRET not in str(action)
    for env, reason in [({"A=B": SECRET}, "'A=B' is not an environment variable name"),
                        ({"TOKEN": f"{SECRET}\0"}, "the value of TOKEN holds a NUL character"),
                        ({"TOKEN": 5}, "Input should be a valid string")]:
        with pytest.raises(ValidationError) as caught:
            ContainerRecreateAction(strategy="container-recreate", container="web", env=env)
        assert reason in str(caught.value)
        assert SECRET not in str(caught.value)


def test_an_exited_container_is_recreated_and_started_and_undo_leaves_it_exited(
    engine: ContainerEngine, world: World,
) -> None:
    name = world.simple()
    world.containers.stop(name)
    old_id = world.api.inspect_container(name)["Id"]

    undo = Recreator(engine).recreate(name, {"MODE": "new"}, [], grace=5, timeout=30)
    assert running(world, name)  # as `docker compose up` does
    assert exec_env(world, name)["MODE"] == "new"
    new = world.api.inspect_container(name)  # host network: the engine gave the host's hostname again
    assert new["Config"]["Hostname"] == socket.gethostname()
    assert env_of(new)["HOSTNAME"] == socket.gethostname()

    undo.undo()
    back = world.api.inspect_container(name)
    assert back["Id"] == old_id
    assert back["State"]["Status"] == "exited"
    assert world.names(name) == [name]


# -- recover(): what a killed apphub leaves ----------------------------------------------------------

# (the old one: its name suffix, running; the new one: its name suffix or None, its state)
@pytest.mark.parametrize(("old_as", "old_runs", "new_as", "new_state"), [
    pytest.param(ASIDE_SUFFIX, True, None, "", id="recreate: after the rename"),
    pytest.param(ASIDE_SUFFIX, True, "", "created", id="recreate: after the create"),
    pytest.param(ASIDE_SUFFIX, False, "", "created", id="recreate: after the stop of the old one"),
    pytest.param(ASIDE_SUFFIX, False, "", "running", id="recreate: after the start, never proven"),
    pytest.param(ASIDE_SUFFIX, False, "", "exited", id="undo: after the stop of the new one"),
    pytest.param(ASIDE_SUFFIX, False, DISCARD_SUFFIX, "exited", id="undo: after the rename of the new one"),
    pytest.param("", False, DISCARD_SUFFIX, "exited", id="undo: after the rename back"),
    pytest.param("", True, DISCARD_SUFFIX, "exited", id="undo: after the start of the old one"),
    pytest.param(ASIDE_SUFFIX, False, None, "", id="the old one aside only"),
])
def test_recover_puts_the_old_container_back(engine: ContainerEngine, world: World, old_as: str, old_runs: bool,
                                             new_as: str | None, new_state: str) -> None:
    name = world.simple()
    old_id = world.api.inspect_container(name)["Id"]
    if old_as:
        world.api.rename(name, name + old_as)
    if not old_runs:
        world.api.stop(name + old_as, timeout=5)
    if new_as is not None:
        world.api.create_container(world.containers.image, ["sh", "-c", SCRIPT], name=name + new_as,
                                   environment={"MODE": "new"},
                                   host_config=world.api.create_host_config(network_mode="host"))
        if new_state != "created":
            world.api.start(name + new_as)
        if new_state == "exited":
            world.api.stop(name + new_as, timeout=5)

    lines = Recreator(engine).recover(only=[name])

    assert [line for line in lines if line.startswith(f"container {name}:")] != []
    back = world.api.inspect_container(name)
    assert back["Id"] == old_id
    assert back["State"]["Running"]
    assert env_of(back)["MODE"] == "old"
    assert world.names(name) == [name]


def test_recover_acts_on_the_names_asked_for_only(engine: ContainerEngine, world: World) -> None:
    # recover() with no names looks at every container of the engine; this engine is shared with other
    # test sessions, whose asides are not ours to put back.
    first, second, other = world.simple(), world.simple(), world.simple()
    for name in (first, second, other):
        world.api.rename(name, name + ASIDE_SUFFIX)

    lines = Recreator(engine).recover(only=[first, second, "no-such-container"])

    assert [line.split(":")[0] for line in lines] == sorted([f"container {first}", f"container {second}"])
    assert world.names(first) == [first]
    assert world.names(second) == [second]
    assert world.names(other) == [other + ASIDE_SUFFIX]


ROUNDS = 8
CHILD = textwrap.dedent("""
    import sys
    from apphub.reload.docker import ContainerEngine
    from apphub.reload.recreate import Recreator
    url, name, finish = sys.argv[1:]
    recreator = Recreator(ContainerEngine(url, timeout=10))
    recreator.engine.ping()  # connected: the kill's delay counts from the recreate's first step
    print("go", flush=True)
    undo = recreator.recreate(name, {"MODE": "new"}, [], 5, 10)
    undo.keep() if finish == "keep" else undo.undo()
    print("done", flush=True)
""")


def test_recover_after_sigkill_at_random_moments(engine: ContainerEngine, world: World,
                                                 podman_service: PodmanService) -> None:
    rng = random.Random(os.environ.get("APPHUB_TEST_SEED"))
    outcomes = []
    for round_ in range(ROUNDS):
        name = world.simple()
        old_id = world.api.inspect_container(name)["Id"]
        finish = "keep" if round_ % 2 else "undo"
        with subprocess.Popen([sys.executable, "-c", CHILD, podman_service.url, name, finish],
                              stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "go"
            time.sleep((round_ + rng.random()) * 1.0 / ROUNDS)  # spread over the second a recreate and its end take
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            finished = child.stdout.read().strip() == "done"

        left = world.settled(name)
        lines = Recreator(engine).recover(only=[name])

        acted = [line for line in lines if line.startswith(f"container {name}:")]
        now = world.api.inspect_container(name)
        assert world.names(name) == [name], (round_, lines)
        assert now["State"]["Running"], (round_, lines)
        if acted:
            assert now["Id"] == old_id
            assert env_of(now)["MODE"] == "old"
        assert env_of(now)["MODE"] in ("old", "new")
        outcomes.append(f"{finish}: " + ("finished" if finished else ", ".join(
            f"{each.removeprefix(name) or 'name'} {status}" for each, status in left.items())))
    print("outcomes:", outcomes)
    # Else every kill came before the first step or after the last, and this test proved nothing.
    assert [outcome for outcome in outcomes if ASIDE_SUFFIX in outcome or DISCARD_SUFFIX in outcome], outcomes
