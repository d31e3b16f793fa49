"""The port-conflict rule: a port key (`type: port`, `host_port` true) must not name a port that
another key of config.ini or system.ini names, nor one that something other than its own service
holds now.

What holds a port now (holders.py) is a process listening on it or a container publishing it; a
holder is fine when it belongs to a service that reads the key (owners.py: the manifest's programs,
containers and pidfiles, and apphub itself for the keys it listens on). Otherwise the finding says
who holds the port: an error when a write sets the key (the write would make the service fail to
bind), a warning in a whole-file check (the write did not cause it). A holder of a key no service
reads, or whose services name no process apphub can recognise, is a warning: apphub cannot tell
whether it is the key's own service.

A write that sets no port key costs nothing here: the host and the engine are asked only for the
ports of the keys a write sets (every port key in a whole-file check), once a second at most.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from apphub.errors import FieldError
from apphub.rules.base import SYSTEM, Candidate, KeyRef
from apphub.rules.holders import Holder, PortScan
from apphub.rules.owners import KeyOwners, ManifestOwners, SyncConnections
from apphub.store.schema import KeySpec
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot

PROBES = KeyRef(SYSTEM, "rules", "port_probes")  # system.ini's switch for asking the host and the engine
# Who holds which host port now (holders.HostPorts.scan, or a test's own).
HolderLookup = Callable[[], PortScan]
# The services that read a key and what of theirs may hold its port (owners.ManifestOwners, or a test's own).
OwnerLookup = Callable[[KeyRef], KeyOwners]


class PortRule:
    """Ports named twice, and ports held by something other than their key's service."""

    name = "port_conflict"

    def __init__(self, holders: HolderLookup, owners: OwnerLookup) -> None:
        self.holders = holders
        self.owners = owners

    def check(self, candidate: Candidate) -> list[FieldError]:
        touched = candidate.touched_keys()
        if touched is not None and not any(is_host_port(candidate.spec(ref)) for ref in touched):
            return []  # the common write: not even the files' other ports are read
        ports = host_ports(candidate)
        judged = {ref: port for ref, port in ports.items() if candidate.touched(ref)}
        if not judged:
            return []
        findings = self._named_twice(ports, judged, candidate)
        if not candidate.switched_on(PROBES):
            return findings
        scan = self.holders()
        not_asked = list(scan.unreachable)
        for ref, port in judged.items():
            held = scan.holders(port)
            if not held:
                continue
            owners = self.owners(ref)
            not_asked += owners.unknown
            finding = self._held(candidate, ref, port, held, owners)
            if finding is not None:
                findings.append(finding)
        if not_asked and candidate.whole:
            # One warning, where the engine and supervisord are configured: the rest was checked.
            findings.append(FieldError(
                "sync", None, self.name, "who holds the ports could not be checked in full: "
                + "; ".join(dict.fromkeys(not_asked)), file=SYSTEM, line=candidate.section_line(SYSTEM, "sync"),
                severity="warning"))
        return findings

    def _named_twice(self, ports: dict[KeyRef, int], judged: dict[KeyRef, int],
                     candidate: Candidate) -> list[FieldError]:
        by_port: dict[int, list[KeyRef]] = {}
        for ref, port in ports.items():
            by_port.setdefault(port, []).append(ref)
        findings = []
        for ref, port in judged.items():
            others = [other for other in by_port[port] if other != ref]
            if others:
                named = " and ".join(f"[{other.section}] {other.key} of {other.file}" for other in others)
                findings.append(candidate.finding(ref, self.name, f"{_shown(candidate, ref, port)} is also {named}"))
        return findings

    def _held(self, candidate: Candidate, ref: KeyRef, port: int, held: tuple[Holder, ...],
              owners: KeyOwners) -> FieldError | None:
        # A holder that may be theirs (its owner could not be looked up) is left out, not guessed at.
        foreign = [holder for holder in held if owners.owns(holder) is False]
        if not foreign:
            return None
        hidden = candidate.made_with_secret(ref)
        who = " and ".join(holder.without_address() if hidden else str(holder) for holder in foreign)
        readers = ", ".join(owners.services)
        port_text = _shown(candidate, ref, port)
        if not owners.services:
            return candidate.finding(ref, self.name, f"{port_text} is {who}; no service of services.yaml reads "
                                     "this key, so apphub cannot tell whether that is its own", "warning")
        if not owners.identifiable:
            return candidate.finding(ref, self.name, f"{port_text} is {who}; services.yaml names no program, "
                                     f"container or pidfile of {readers} (reading this key), so apphub cannot "
                                     "tell whether that is theirs", "warning")
        service = f"the service {readers}, which reads" if len(owners.services) == 1 \
            else f"the services {readers}, which read"
        return candidate.finding(ref, self.name, f"{port_text} is already {who}, which is not {service} this key",
                                 "warning" if candidate.whole else "error")


def _shown(candidate: Candidate, ref: KeyRef, port: int) -> str:
    """`port 9000`, or `its port` when the value is made with a secret (which a finding never shows)."""
    return f"its port ({MASK}, made with a secret)" if candidate.made_with_secret(ref) else f"port {port}"


def host_ports(candidate: Candidate) -> dict[KeyRef, int]:
    """Every host-port key of both files with a valid port: the file's value, or the schema's
    default for a key its section leaves out (what the services get)."""
    found: dict[KeyRef, int] = {}
    for file in candidate.file_names():
        refs = dict.fromkeys(candidate.keys(file))
        schema = candidate.schema(file)
        for section, section_spec in (schema.sections.items() if schema is not None else ()):
            if candidate.has_section(file, section):
                refs.update(dict.fromkeys(KeyRef(file, section, key) for key, key_spec in section_spec.keys.items()
                                          if key_spec.type == "port"))
        for ref in refs:
            spec = candidate.spec(ref)
            if spec is None or not is_host_port(spec):
                continue
            text = candidate.value(ref)
            port = _port(text if text is not None else spec.default)
            if port is not None:
                found[ref] = port
    return found


def is_host_port(spec: KeySpec | None) -> bool:
    """Whether a key names a port its service binds on this host."""
    return spec is not None and spec.type == "port" and spec.host_port


def _port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        port = int(str(value).strip())
    except ValueError:
        return None  # the schema's own check reports it
    return port if 0 < port < 65536 else None


def port_rule(data_root: Path, system: Callable[[], Snapshot | None], config: Callable[[], Snapshot | None], *,
              apphub_keys: Collection[KeyRef] = ()) -> PortRule:
    """The rule for a data folder: its services.yaml, checked against system.ini [sync] roots, and
    the supervisord and container engine that system.ini [sync] names, as the sync engine reads
    them. `system` and `config`: how to read those files now (the stores' `last_good`).
    `apphub_keys`: the keys apphub itself listens on."""
    connections = SyncConnections(system)
    owners = ManifestOwners(data_root, connections, config, apphub_keys=apphub_keys)
    return PortRule(lambda: connections.host_ports().scan(), owners)
