"""SIGKILL at random moments while writes pour in: after a restart every acknowledged version is a commit.

A real `apphub serve` takes PUTs from several threads (each 200 is an acknowledged version) and CLI
writers run beside it; the server, and some CLI writers, are killed with SIGKILL at random moments,
round after round. After each restart: every acknowledged version is in the history (a commit of
the repository, in the index), the last commit holds config.ini as it is on disk, and git fsck
finds nothing wrong.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from apphub.paths import DataDir
from apphub.store.snapshot import version_of
from tests.integration.conftest import APPHUB, StartServe, cli_environment

ROUNDS = 8
WRITERS = 3


def versions_in_git(data: DataDir) -> set[str]:
    done = subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "log", "--format=%B", "main"],
                          capture_output=True, text=True, check=True)
    return {line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("Apphub-Config-Version: ")}


def head_config(data: DataDir) -> bytes:
    return subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "show", "main:config.ini"],
                          capture_output=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.timeout(600)  # 56 s alone; twice that beside another test on a loaded 2-CPU machine
def test_every_acknowledged_version_is_a_commit_after_kills(tmp_path: Path, serve: StartServe) -> None:
    rng = random.Random(9)
    root = tmp_path / "kills"
    data = DataDir(root / "data")
    subprocess.run([str(APPHUB), "--data-dir", str(data.root), "init"], check=True, capture_output=True,
                   env=cli_environment(root / "xdg"))
    key = data.admin_key.read_text().strip()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(10**9))

    for round_number in range(ROUNDS):
        server = serve(data, "warning")
        stop = threading.Event()

        def write(server_url: str = server.url, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=server_url, headers={"x-api-key": key}, timeout=10) as client:
                while not stop.is_set():
                    value = f"k{next(counter)}@example.com"
                    try:
                        answer = client.put("/api/v1/settings/gitea", json={"user_email": value})
                    except httpx.TransportError:
                        return  # the server was killed
                    if answer.status_code == 200:
                        with lock:
                            acknowledged.add(answer.json()["version"])

        threads = [threading.Thread(target=write) for _ in range(WRITERS)]
        for thread in threads:
            thread.start()
        clis = [subprocess.Popen([str(APPHUB), "--data-dir", str(data.root), "config", "set", "portainer",
                                  "user_name", f"cli{round_number}x{n}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=cli_environment(root / "xdg")) for n in range(2)]
        time.sleep(rng.uniform(0.2, 1.2))
        server.process.send_signal(signal.SIGKILL)
        clis[0].send_signal(signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join(15)
        for cli in clis:
            out, _ = cli.communicate(timeout=30)
            if cli.returncode == 0:  # acknowledged: it printed its version
                acknowledged.add(out.decode().rsplit("(version ", 1)[1].split(")")[0])
        server.process.wait()

        # a restart: every acknowledged version is a commit, and the last commit is what is on disk
        server = serve(data, "warning")
        with server.client(key) as client:
            client.get("/api/v1/settings/history", params={"limit": 1}).raise_for_status()
            status = client.get("/api/v1/history/status").json()
        assert status["waiting"] == 0, status
        missing = acknowledged - versions_in_git(data)
        assert not missing, f"round {round_number}: acknowledged versions not in the history: {missing}"
        assert head_config(data) == data.config_ini.read_bytes()
        assert status["version"] == version_of(data.config_ini.read_bytes())
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()

    fsck = subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "fsck", "--no-dangling"],
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stderr
    assert len(acknowledged) > ROUNDS * 5, f"too few writes were acknowledged to tell: {len(acknowledged)}"
    print(f"\nkills: {ROUNDS} rounds, {len(acknowledged)} acknowledged versions, every one a commit")
