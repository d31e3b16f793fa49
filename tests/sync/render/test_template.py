"""Jinja2 templates: strict, sandboxed, confined to the templates folder, every read recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import MissingValue, Values
from tests.sync.render.conftest import ADMIN_PASSWORD

NGINX_CONF = """\
# rendered by apphub for {{ service }}
server {
    listen {{ settings.web.port }};
    server_name {{ settings.web.hosts | join(' ') }};
    {% if settings.web.debug %}error_log /var/log/nginx/error.log debug;{% endif %}
}
"""


def template_spec(template: str, path: str = "/srv/web/nginx.conf") -> FileSpec:
    return FileSpec(path=path, template=template)


def write(templates: Path, name: str, text: str) -> None:
    (templates / name).parent.mkdir(parents=True, exist_ok=True)
    (templates / name).write_text(text, encoding="utf-8")


def render(values: Values, templates: Path, name: str) -> str:
    return render_file("web", template_spec(name), values, None, templates).decode()


def error_of(values: Values, templates: Path, name: str) -> str:
    with pytest.raises(RenderError) as caught:
        render(values, templates, name)
    return str(caught.value)


def test_a_template_renders_settings_and_the_service_name_and_records_what_it_read(
    values: Values, templates: Path
) -> None:
    write(templates, "nginx.conf.j2", NGINX_CONF)

    rendered = render(values, templates, "nginx.conf.j2")

    assert rendered == """\
# rendered by apphub for web
server {
    listen 8443;
    server_name web.example.com www.example.com;
    error_log /var/log/nginx/error.log debug;
}
"""
    assert values.read == {("web", "port"), ("web", "hosts"), ("web", "debug")}


def test_booleans_and_lists_print_as_config_files_write_them(values: Values, templates: Path) -> None:
    write(templates, "t.j2", "{{ settings.web.debug }} {{ settings.web.hosts }} {{ settings['web']['port'] + 1 }}")

    assert render(values, templates, "t.j2") == "true web.example.com,www.example.com 8444"


def test_env_is_readable_recorded_and_a_missing_variable_is_an_error_that_is_recorded_too(
    values: Values, templates: Path
) -> None:
    write(templates, "home.j2", "home={{ env.HOME }}\n")
    write(templates, "missing.j2", "a\nb={{ env.NOT_SET }}\n")

    assert render(values, templates, "home.j2") == "home=/root\n"
    assert error_of(values, templates, "missing.j2") == (
        "service web, file /srv/web/nginx.conf: template missing.j2, line 2: "
        "env.NOT_SET: the environment variable NOT_SET is not set"
    )
    assert values.env_read == {"HOME", "NOT_SET"}


def test_a_missing_key_is_an_error_naming_template_line_and_key_never_an_empty_string(
    values: Values, templates: Path
) -> None:
    write(templates, "t.j2", "line one\nport={{ settings.web.port }}\nlisten={{ settings.web.listen }}\n")

    with pytest.raises(RenderError) as caught:
        render(values, templates, "t.j2")

    assert str(caught.value) == (
        "service web, file /srv/web/nginx.conf: template t.j2, line 3: settings.web.listen: "
        "config.ini has no key 'listen' in [web], and the schema gives no default"
    )
    assert ("web", "listen") in values.read  # set later, it must render this template again


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ settings.nosuch.key }}", "settings.nosuch: config.ini has no section [nosuch], and the schema names none"),
        ("{{ nosuch }}", "'nosuch' is undefined (a template sees settings, env and service)"),
        ("{{ settings.web.port.nosuch }}", "'int object' has no attribute 'nosuch'"),
        ("{% for host in settings.web.nohosts %}{{ host }}{% endfor %}", "settings.web.nohosts: config.ini has no key"),
    ],
)
def test_every_kind_of_undefined_is_an_error(values: Values, templates: Path, text: str, message: str) -> None:
    write(templates, "t.j2", text)

    assert message in error_of(values, templates, "t.j2")


def test_a_missing_value_keeps_its_error_type_for_the_engine(values: Values, templates: Path) -> None:
    write(templates, "t.j2", "{{ settings.web.listen }}")

    with pytest.raises(RenderError) as caught:
        render(values, templates, "t.j2")

    assert not isinstance(caught.value, MissingValue)  # undefined in a template is a template error...
    spec = FileSpec(path="/srv/web/app.json", map={"listen": "${web.listen}"})
    with pytest.raises(MissingValue):  # ...and a map's missing reference stays a MissingValue
        render_file("web", spec, values, None, templates)


def test_a_syntax_error_names_the_template_and_line_also_in_an_include(values: Values, templates: Path) -> None:
    write(templates, "bad.j2", "line 1\nline 2\n{% for host in %}{% endfor %}\n")
    write(templates, "main.j2", "main\n{% include 'bad.j2' %}\n")
    write(templates, "unclosed.j2", "ok\n{% if settings.web.debug %}\nunclosed\n")

    assert error_of(values, templates, "bad.j2") == (
        "service web, file /srv/web/nginx.conf: template bad.j2, line 3: "
        "syntax error: Expected an expression, got 'end of statement block'"
    )
    assert error_of(values, templates, "main.j2").startswith(
        "service web, file /srv/web/nginx.conf: template bad.j2, line 3 (included from main.j2, line 2): syntax error"
    )
    assert "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'" in error_of(
        values, templates, "unclosed.j2")


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__ }}",
        "{{ settings.__class__.__init__.__globals__ }}",
        "{{ settings.web._values.snapshot.box }}",
        "{{ env._values.environ }}",
        "{{ cycler.__init__.__globals__.os.system('id') }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ settings.web.hosts.append('evil.example.com') }}",
        "{{ ''.format.__self__ }}",
    ],
)
def test_the_sandbox_refuses_attribute_tricks(values: Values, templates: Path, escape: str) -> None:
    write(templates, "evil.j2", f"first line\n{escape}\n")

    message = error_of(values, templates, "evil.j2")

    assert message.startswith("service web, file /srv/web/nginx.conf: template evil.j2, line 2: ")
    assert "unsafe" in message or "undefined" in message or "has no attribute" in message
    assert values.get("web", "hosts") == ["web.example.com", "www.example.com"]  # nothing was changed


def test_includes_within_the_templates_folder_work_and_errors_name_the_include_chain(
    values: Values, templates: Path
) -> None:
    write(templates, "main.j2", "main\n{% include 'parts/listen.j2' %}")
    write(templates, "parts/listen.j2", "listen {{ settings.web.port }};\n")
    write(templates, "broken.j2", "a\nb\n{% include 'parts/bad.j2' %}\n")
    write(templates, "parts/bad.j2", "x\n{{ settings.web.nope }}\n")

    assert render(values, templates, "main.j2") == "main\nlisten 8443;\n"
    assert error_of(values, templates, "broken.j2").startswith(
        "service web, file /srv/web/nginx.conf: template parts/bad.j2, line 2 (included from broken.j2, line 3): "
        "settings.web.nope: config.ini has no key 'nope'"
    )


@pytest.mark.parametrize("include", ["../outside.j2", "/etc/passwd", "parts/../../outside.j2", "link.j2"])
def test_a_template_outside_the_folder_is_refused(values: Values, templates: Path, include: str) -> None:
    (templates.parent / "outside.j2").write_text("secret outside\n")
    os.symlink(templates.parent / "outside.j2", templates / "link.j2")
    write(templates, "main.j2", f"main\n{{% include '{include}' %}}\n")

    message = error_of(values, templates, "main.j2")

    assert message.startswith("service web, file /srv/web/nginx.conf: template main.j2, line 2: ")
    assert "templates folder" in message
    assert "secret outside" not in message


def test_a_manifest_template_name_that_leaves_the_folder_is_refused_by_the_loader_too(
    values: Values, templates: Path
) -> None:
    (templates.parent / "outside.j2").write_text("secret outside\n")
    os.symlink(templates.parent / "outside.j2", templates / "link.j2")

    message = error_of(values, templates, "link.j2")

    assert message == ("service web, file /srv/web/nginx.conf: template link.j2: "
                       "'link.j2' leads outside the templates folder")


def test_a_missing_template_and_a_missing_include(values: Values, templates: Path) -> None:
    write(templates, "main.j2", "{% include 'gone.j2' %}")

    assert error_of(values, templates, "nope.j2") == (
        f"service web, file /srv/web/nginx.conf: template nope.j2: no such file in the templates folder {templates}"
    )
    assert error_of(values, templates, "main.j2") == (
        "service web, file /srv/web/nginx.conf: template main.j2, line 1: includes 'gone.j2', which does not exist"
    )


def test_an_edited_template_is_rendered_anew(values: Values, templates: Path) -> None:
    write(templates, "t.j2", "port {{ settings.web.port }}\n")
    assert render(values, templates, "t.j2") == "port 8443\n"

    write(templates, "t.j2", "PORT {{ settings.web.port }}\n")  # same size, within the same clock tick

    assert render(values, templates, "t.j2") == "PORT 8443\n"


def test_a_secret_renders_in_plaintext_but_never_shows_in_an_error(values: Values, templates: Path) -> None:
    write(templates, "ok.j2", "password={{ settings.web.admin_password }}\n")
    write(templates, "leak.j2", "{{ settings.web[settings.web.admin_password] }}\n")
    write(templates, "leak2.j2", "{{ {}[settings.web.admin_password] }}\n")  # Jinja's message holds its repr()

    assert render(values, templates, "ok.j2") == f"password={ADMIN_PASSWORD}\n"
    for name in ("leak.j2", "leak2.j2"):
        with pytest.raises(RenderError) as caught:
            render(values, templates, name)
        chain = [caught.value, caught.value.__cause__, caught.value.__context__]
        assert all(ADMIN_PASSWORD not in str(link) and repr(ADMIN_PASSWORD)[1:-1] not in str(link)
                   for link in chain if link is not None)
        assert "********" in str(caught.value)


def test_a_template_with_a_known_format_is_checked_in_that_format(values: Values, templates: Path) -> None:
    write(templates, "app.json.j2", '{"port": {{ settings.web.port }}, "debug": {{ settings.web.debug }}}\n')
    spec = template_spec("app.json.j2", path="/srv/web/app.json")

    rendered = render_file("web", spec, values, None, templates)

    assert spec.format == "json"
    check_rendered("web", spec, rendered)
    with pytest.raises(RenderError, match="json: does not parse as JSON"):
        check_rendered("web", spec, b'{"port": }')
    check_rendered("web", template_spec("nginx.conf.j2"), b"anything { at all")  # no format: nothing to parse
