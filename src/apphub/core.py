"""Everything apphub holds for one data folder, built once and closed once (API and CLI alike)."""

from __future__ import annotations

from pathlib import Path

from apphub.audit.log import AuditLog
from apphub.db import Database
from apphub.environments.judging import config_hook, overlay_hook, relocated, system_hook
from apphub.environments.overlays import Environments, merged
from apphub.envvars.service import EnvVars
from apphub.envvars.store import SCHEMA as ENV_SCHEMA
from apphub.envvars.store import EnvStore, ensure_file
from apphub.errors import DataDirError, FieldError, IniParseError
from apphub.history.service import History
from apphub.keys import KeyStore
from apphub.notify.notifier import Notifier
from apphub.paths import DataDir
from apphub.rules.book import standard_rules
from apphub.store.check import field_errors
from apphub.store.inistore import IniStore
from apphub.store.schema import FileName, FileSchema, Schema, SchemaSource
from apphub.store.secrets import SecretBox


class Core:
    """The stores, the audit log and the key store of one initialised data folder."""

    def __init__(self, data: DataDir) -> None:
        if not data.is_initialised():
            raise DataDirError(
                f"{data.root} is not an initialised apphub data folder "
                "(run `apphub init` or `apphub serve`, or point --data-dir / APPHUB_DATA at one)"
            )
        self.data = data
        self.schema_source = SchemaSource(data.schema_dir)
        self.box = SecretBox(data.secret_key)
        # Two connections: request authentication reads keys while a write records its audit event.
        self._audit_db = Database(data.database)
        self._audit_db.migrate()
        self._keys_db = Database(data.database)
        self.audit = AuditLog(self._audit_db)
        self.keys = KeyStore(self._keys_db)
        self.config = self._store(data.config_ini, "config")
        self.system = self._store(data.system_ini, "system")
        ensure_file(data.env_ini)  # a data folder made before env.ini existed
        self.env = EnvStore(IniStore(data.env_ini, data.lock_for(data.env_ini), ENV_SCHEMA, self.box, self.audit))
        stores = (self.config, self.system, self.env.store)
        for store in stores:
            store.settle()  # what a writer killed between its audit event and its replace left
        self.rules = standard_rules(data, self.system.last_good, self.config.last_good)
        self.environments = Environments(data, self.config, self.system, self.box, self.audit)
        self.config.rules = config_hook(self.rules, self.environments, self.system.last_good)
        self.system.rules = system_hook(self.rules, self.environments, self.config.last_good)
        self.environments.rules_for = lambda name: overlay_hook(self.rules, self.config.last_good,
                                                                self.system.last_good)
        self.envvars = EnvVars(self.env, self.config, self.system, data.root / "services.yaml", data.root)
        self.history = History(data, self.audit, {store.name: store for store in stores})
        for store in stores:
            store.after_write.append(self.history.notify)
        self.history.more_stores = self.environments.stores
        self.environments.on_new_store.append(lambda store: store.after_write.append(self.history.notify))
        # Every write is told to the notification destinations that want it (the server delivers).
        self.notifications = Notifier(data.database, self.box, self.audit)
        for store in stores:
            store.after_change.append(self.notifications.on_write)
        self.environments.on_new_store.append(lambda store: store.after_change.append(self.notifications.on_write))

    def findings(self) -> list[FieldError]:
        """Every problem of config.ini and system.ini as they are now: the schema's, then the
        rules' judged on every key (warnings included). What `apphub check` and
        POST /api/v1/settings/validate without a proposal list."""
        found: list[FieldError] = []
        files = {}
        for store in (self.config, self.system):
            try:
                snapshot = store.snapshot()
            except IniParseError as exc:
                found.append(FieldError("*", None, "parse", exc.public, file=store.name, line=exc.line))
                continue
            files[store.name] = snapshot
            found += field_errors(snapshot.document, snapshot.schema, self.box, store.name, plaintext_secrets=False)
        overlay = self.environments.overlay(self.environments.active())
        if overlay is not None and self.config.name in files:  # the rules judge what the services get
            found += field_errors(overlay.document, overlay.schema, self.box, overlay.name, plaintext_secrets=False)
            files[self.config.name] = merged(files[self.config.name], overlay)
        return found + relocated(self.rules.judge(files), overlay)

    @property
    def schema(self) -> Schema:
        return self.schema_source.current(fresh=True)

    def _store(self, path: Path, name: FileName) -> IniStore:
        def schema_of(fresh: bool) -> FileSchema:
            return self.schema_source.current(fresh=fresh).for_file(name)

        return IniStore(path, self.data.lock_for(path), schema_of, self.box, self.audit)

    def close(self) -> None:
        self.notifications.close()
        self.history.close()
        self._audit_db.close()
        self._keys_db.close()
