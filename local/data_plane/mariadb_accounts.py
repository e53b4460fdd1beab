"""The accounts of a private MariaDB, as the SQL its init file runs before the server accepts a connection.

Three kinds of account exist, and nothing else can log in:
- ``root@localhost``: the unix socket only, and only for the OS user running the server (``unix_socket``);
  the socket itself lives in a 0700 directory (`MariaDBServer.socket_path`), so other OS users cannot reach it.
- ``root@127.0.0.1``: the admin path our tools use (the monitor on the extra port), with a random password that
  changes at every start and is never written anywhere but the 0600 init file, deleted once the server is ready.
- the database's master (``MariaDBConfig.app_user``): what RDS's master user has that schema management needs,
  on its own database: DDL and data rights WITH GRANT OPTION there, plus CREATE USER and SELECT on ``mysql``
  (``SHOW GRANTS FOR`` another user needs it), so a migrator can create the application user, read its grants and
  grant it exactly what the request path uses (RDS's master has these through its global grants). Never SUPER or
  CONNECTION ADMIN: MariaDB keeps one connection beyond ``max_connections`` for those, which would skew the
  "Too many connections" (1040) experiment.

Datadirs installed before this hardening had passwordless root accounts (``--auth-root-authentication-method=
normal``: ``root@localhost``, ``root@::1``, ``root@<hostname>``); the statements below close them on every start,
so an existing instance is fixed by its next start and keeps its data.
"""

from __future__ import annotations

from local.data_plane.mariadb_config import sql_string

ADMIN_USER = "root"
ADMIN_HOST = "127.0.0.1"
ROOT_INSTALL_OPTIONS = ("--auth-root-authentication-method=socket",)
"""``mariadb-install-db`` options: root logs in through the socket as the OS user that runs the server only."""


def _identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def init_statements(database: str, master_user: str, master_password: str, admin_password: str) -> list[str]:
    """Idempotent statements, one per line (the init file's rule), that set every account's state."""
    db, user = _identifier(database), sql_string(master_user)
    master, admin = sql_string(master_password), sql_string(admin_password)
    return [
        # Passwordless root accounts of older datadirs: closed (socket only) or removed.
        "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED VIA unix_socket;",
        "DROP USER IF EXISTS 'root'@'::1';",
        "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ''root''@', QUOTE(@@hostname));",
        "DROP USER IF EXISTS ''@'localhost';",
        "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ''''@', QUOTE(@@hostname));",
        f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{ADMIN_HOST}' IDENTIFIED BY {admin};",
        f"ALTER USER '{ADMIN_USER}'@'{ADMIN_HOST}' IDENTIFIED BY {admin};",
        f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{ADMIN_HOST}' WITH GRANT OPTION;",
        f"CREATE DATABASE IF NOT EXISTS {db};",
        f"CREATE USER IF NOT EXISTS {user}@'%' IDENTIFIED BY {master};",
        f"ALTER USER {user}@'%' IDENTIFIED BY {master};",
        f"GRANT ALL PRIVILEGES ON {db}.* TO {user}@'%' WITH GRANT OPTION;",
        f"GRANT CREATE USER ON *.* TO {user}@'%';",
        f"GRANT SELECT ON `mysql`.* TO {user}@'%';",
    ]
