"""Environment variables: independent ones (env.ini), mapped ones (the manifest's `env:`), and
where each service's environment comes from. The sync engine puts them in place (a `.env` file, a
supervisord program's `environment=`, a recreated container)."""
