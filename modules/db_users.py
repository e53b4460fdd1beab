"""MySQL user names the stack creates: the rules RDS imposes and the defaults, defined once.

Imports nothing from cdktf, so the settings and the local tooling can use it without the provider bindings.
"""

from __future__ import annotations

from typing import Annotated

from modules.props import matching, satisfying

DEFAULT_MASTER_USERNAME = "app_admin"
"""The RDS master user: administration and the deploy's migrator only."""
DEFAULT_APP_USERNAME = "app_user"
"""The request path's user: DML on the handler's own tables only."""
RESERVED_DB_USERNAMES = ("rdsadmin", "rdsrepladmin", "mysql.sys", "root", "admin_rds")

DbUserName = Annotated[
    str,
    matching(r"[A-Za-z][A-Za-z0-9_]{0,15}", "1-16 letters, digits or underscores, starting with a letter"),
    satisfying(
        "a name other than the reserved " + ", ".join(RESERVED_DB_USERNAMES),
        lambda name: name.lower() not in RESERVED_DB_USERNAMES,
    ),
]
"""A MySQL user name RDS accepts: 1-16 word characters, none of the names RDS reserves for itself."""
