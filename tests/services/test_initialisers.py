"""The products' initialisers against stand-ins that follow the products' own specifications.

Every test ends by checking that each request apphub sent matched the specification (the
stand-ins record what did not), and that no secret reached a recorded result.
"""

from __future__ import annotations

import json
from pathlib import Path

from apphub.core import Core
from apphub.notify.outbox import Delivery
from apphub.services.bundle import build_bundle
from apphub.services.manager import INIT_ACTOR
from apphub.services.status import ProductRun
from tests.services.conftest import Stage
from tests.standins.npm import NpmStandIn
from tests.standins.portainer import PortainerStandIn


def states(run: ProductRun) -> dict[str, str]:
    return {step.name: step.state for step in run.steps}


def no_secret_in(stage: Stage, text: str) -> None:
    for section, key in (("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("gitea", "api_token"),
                         ("portainer", "user_pwd")):
        secret = stage.secret(section, key)
        if secret:
            assert secret not in text, (section, key)


def test_a_fresh_host_is_initialised_and_a_second_run_changes_nothing(stage: Stage) -> None:
    first = stage.manager.initialise(trigger="cli")

    assert {name: run.state for name, run in first.items()} == {
        "nginx_proxy_manager": "done", "gitea": "done", "portainer": "done", "cockpit": "done"}
    assert states(first["nginx_proxy_manager"]) == {"reach": "unchanged", "admin": "done", "token": "unchanged"}
    assert states(first["gitea"]) == {"reach": "unchanged", "admin": "done", "token": "done", "repository": "done",
                                      "webhook": "unchanged"}
    assert states(first["portainer"]) == {"reach": "unchanged", "admin": "done", "login": "unchanged",
                                          "environment": "done"}
    # NPM: the first admin is the configured account, proved by logging in with it.
    [user] = stage.npm.users
    assert user["email"] == "admin@mydomain.com"
    assert user["password"] == stage.secret("nginx_proxy_manager", "user_pwd")
    assert stage.npm.calls("POST", r"/api/tokens")
    # Gitea: the admin made by its CLI as the git user, a token stored as a secret, the history repository.
    [(container, argv, user_name, environment)] = stage.container.runs
    assert (container, user_name) == ("websoft9-git", "git")
    assert "gitea admin user create --admin" in argv[2]
    # The password is in the exec's environment, never its argv (the engine's events show an argv).
    assert environment == {"APPHUB_PASSWORD": stage.secret("gitea", "user_pwd")}
    assert stage.secret("gitea", "user_pwd") not in " ".join(argv)
    [admin] = stage.gitea.users
    assert admin["is_admin"] is True
    token = stage.secret("gitea", "api_token")
    assert [t["sha1"] for t in stage.gitea.tokens["websoft9"]] == [token]
    assert b"enc:v1:" in stage.core.data.config_ini.read_bytes()
    assert token.encode() not in stage.core.data.config_ini.read_bytes()
    assert [(repo["owner"], repo["name"], repo["private"]) for repo in stage.gitea.repos] == [
        ("websoft9", "apphub-config", True)]
    history = stage.core.system.snapshot()
    assert history.document.get("history", "remote_url") == f"{stage.gitea.url}/websoft9/apphub-config.git"
    # Portainer: the admin, then the local Docker environment, once.
    assert stage.portainer.admin is not None
    assert stage.portainer.admin["username"] == "admin"
    assert [(e["Name"], e["Type"]) for e in stage.portainer.endpoints] == [("local", 1)]

    second = stage.manager.initialise(trigger="cli")

    for run in second.values():
        assert run.state == "done", (run.service, states(run))
        assert not run.changed, (run.service, states(run))
        assert all(step.state == "unchanged" for step in run.steps)
    assert len(stage.container.runs) == 1
    assert len(stage.portainer.endpoints) == 1
    assert len(stage.gitea.repos) == 1
    assert stage.violations() == []
    no_secret_in(stage, json.dumps({name: run.to_dict() for name, run in {**first, **second}.items()}))


def test_steps_are_retried_while_a_product_is_down_then_succeed(stage: Stage) -> None:
    stage.npm.down_for(2)
    stage.portainer.fail_next("POST", r"/api/users/admin/init", status=502)

    runs = stage.manager.initialise(["nginx_proxy_manager", "portainer"], trigger="cli")

    npm, portainer = runs["nginx_proxy_manager"], runs["portainer"]
    assert npm.state == portainer.state == "done"
    assert npm.steps[0].attempts == 3  # two connections dropped, then an answer
    assert portainer.steps[1].attempts == 2  # a 5xx in the middle of the step, then the init
    assert stage.portainer.admin is not None
    assert stage.violations() == []


def test_a_product_that_never_comes_up_fails_with_the_error_and_skips_the_rest(stage: Stage) -> None:
    stage.gitea.stop()

    [run] = stage.manager.initialise(["gitea"], trigger="cli").values()

    assert run.state == "failed"
    assert states(run) == {"reach": "failed", "admin": "skipped", "token": "skipped", "repository": "skipped",
                           "webhook": "skipped"}
    reach = run.steps[0]
    assert reach.attempts == 4
    assert "gitea" in (reach.last_error or "")
    assert "healthz" in (reach.last_error or "")
    assert stage.manager.status.load()["gitea"].state == "failed"


def test_wrong_npm_credentials_fail_at_once_naming_the_account(stage: Stage) -> None:
    stage.npm.add_user("admin@mydomain.com", "someone-elses-password")

    [run] = stage.manager.initialise(["nginx_proxy_manager"], trigger="cli").values()

    assert run.state == "failed"
    admin = run.steps[1]
    assert admin.state == "failed"
    assert admin.attempts == 1
    assert "admin@mydomain.com" in (admin.last_error or "")
    assert stage.npm.users[0]["password"] == "someone-elses-password"
    assert stage.violations() == []


def test_npm_before_2_13_gets_its_default_admin_replaced_by_the_configured_one(stage: Stage) -> None:
    with NpmStandIn(version=(2, 12, 0)) as legacy:
        stage.core.config.update({"nginx_proxy_manager": {"base_url": f"{legacy.url}/api"}}, INIT_ACTOR)
        [run] = stage.manager.initialise(["nginx_proxy_manager"], trigger="cli").values()
        assert run.state == "done", states(run)
        [user] = legacy.users
        assert user["email"] == "admin@mydomain.com"
        assert user["password"] == stage.secret("nginx_proxy_manager", "user_pwd")
        assert legacy.violations == []


def test_portainer_2_43_without_its_setup_token_asks_for_it(stage: Stage) -> None:
    with PortainerStandIn(setup_token="token-from-the-log") as portainer:
        stage.core.config.update({"portainer": {"base_url": f"{portainer.url}/api"}}, INIT_ACTOR)
        [run] = stage.manager.initialise(["portainer"], trigger="cli").values()
        assert run.state == "manual"
        assert "setup_token" in (run.steps[1].detail or "")
        assert portainer.admin is None
        # Sent once without the token (none was configured), as the specification says it must not be.
        assert [v for v in portainer.violations if "X-Setup-Token" not in v] == []
        portainer.violations.clear()

        stage.core.config.update({"portainer": {"setup_token": "token-from-the-log"}}, INIT_ACTOR)
        [run] = stage.manager.initialise(["portainer"], trigger="cli").values()
        assert run.state == "done", states(run)
        assert portainer.admin is not None
        assert portainer.violations == []
        assert "token-from-the-log" not in json.dumps(run.to_dict())


def test_portainer_past_its_init_window_says_to_restart_it(stage: Stage) -> None:
    stage.portainer.expire_init_window()

    [run] = stage.manager.initialise(["portainer"], trigger="cli").values()

    assert run.state == "manual"
    assert "restart" in (run.steps[0].detail or run.steps[1].detail or "")


def test_gitea_without_a_container_says_which_command_creates_the_admin(stage: Stage) -> None:
    stage.core.system.update({"services": {"gitea_container": ""}}, INIT_ACTOR)

    [run] = stage.manager.initialise(["gitea"], trigger="cli").values()

    assert run.state == "manual"
    detail = run.steps[1].detail or ""
    assert "gitea admin user create --admin --username websoft9" in detail
    assert "apphub getconfig --section gitea --key user_pwd" in detail
    assert stage.secret("gitea", "user_pwd") not in detail
    assert stage.container.runs == []


def test_gitea_token_lost_by_apphub_is_replaced_and_a_webhook_is_added_active(stage: Stage) -> None:
    stage.manager.initialise(["gitea"], trigger="cli")
    stage.core.config.update({"gitea": {"api_token": "0" * 40, "webhook_url": "http://127.0.0.1:9/hook"}},
                             INIT_ACTOR)

    [run] = stage.manager.initialise(["gitea"], trigger="cli").values()

    assert run.state == "done", states(run)
    assert states(run)["token"] == "done"
    assert states(run)["webhook"] == "done"
    assert len(stage.gitea.tokens["websoft9"]) == 1  # the lost one deleted, a new one made
    [hook] = stage.gitea.hooks["websoft9/apphub-config"]
    assert hook["active"] is True
    assert hook["config"]["url"] == "http://127.0.0.1:9/hook"
    assert stage.secret("gitea", "webhook_secret")
    assert stage.violations() == []


def test_connection_tests_say_version_and_authentication(stage: Stage) -> None:
    before = {check.name: check for check in stage.manager.check_products()}
    assert before["nginx_proxy_manager"].health == "unhealthy"  # no admin yet
    assert before["cockpit"].health == "healthy"

    stage.manager.initialise(trigger="cli")
    after = {check.name: check for check in stage.manager.check_products()}

    assert {name: check.health for name, check in after.items()} == dict.fromkeys(after, "healthy")
    assert after["gitea"].version == "1.26.3"
    assert after["gitea"].authenticated is True
    assert after["nginx_proxy_manager"].version == "2.15.1"
    assert after["portainer"].authenticated is True
    stage.gitea.stop()
    down = stage.manager.check_products(["gitea"])[0]
    assert down.health == "down"
    assert down.reason
    assert stage.violations() == []


def test_cockpit_conf_is_checked_against_what_apphub_renders(stage: Stage, tmp_path: Path) -> None:
    target = tmp_path / "cockpit" / "cockpit.conf"
    stage.core.system.update({"sync": {"roots": str(tmp_path / "cockpit")}}, INIT_ACTOR)
    (stage.core.data.root / "services.yaml").write_text(
        "services:\n  cockpit:\n    files:\n"
        f"      - path: {target}\n        format: ini\n        map:\n"
        "          WebService.Origins: http://${nginx_proxy_manager.docker0_ip}:${nginx_proxy_manager.listen_port}\n")

    [stale] = stage.manager.initialise(["cockpit"], trigger="cli").values()
    [file] = build_bundle(stage.core, "cockpit").files
    target.parent.mkdir()
    target.write_bytes(file.content)  # what the sync would write
    [applied] = stage.manager.initialise(["cockpit"], trigger="cli").values()

    assert states(stale) == {"reach": "unchanged", "configuration": "failed"}
    assert "does not hold what apphub renders" in (stale.steps[1].last_error or "")
    assert states(applied) == {"reach": "unchanged", "configuration": "unchanged"}
    assert f"{target} holds what apphub renders" in (applied.steps[1].detail or "")


# -- told to the notifications ----------------------------------------------------------------

NOBODY = "http://127.0.0.1:9/hook"  # nothing listens: the events stay queued for the test to read


def queued(core: Core, kind: str) -> list[Delivery]:
    return [d for d in core.notifications.outbox.deliveries(limit=1000) if d.event.type == kind]


def test_a_failing_initialiser_is_told_once_naming_the_step(stage: Stage) -> None:
    core = stage.core
    core.notifications.destinations.add("ops", "webhook", NOBODY, events=["init.failed"],
                                        services=["nginx_proxy_manager"])
    stage.manager.on_run.append(core.notifications.on_init_run)
    stage.npm.add_user("admin@mydomain.com", "someone-elses-password")

    [run] = stage.manager.initialise(["nginx_proxy_manager"], trigger="cli").values()
    assert run.state == "failed"
    stage.manager.initialise(["nginx_proxy_manager"], trigger="retry")  # fails again: not told again

    [told] = queued(core, "init.failed")
    assert told.event.services == ("nginx_proxy_manager",)
    [step] = told.event.data["steps"]
    assert step["step"] == run.steps[1].name
    assert "admin@mydomain.com" in step["error"]
    assert "admin@mydomain.com" in told.event.summary
    shown = json.dumps(told.event.as_dict())
    configured = stage.secret("nginx_proxy_manager", "user_pwd")
    assert configured
    assert configured not in shown
    assert "someone-elses-password" not in shown
