"""RDS for MySQL engine rules: which versions we deploy, what each major version changes, which classes fit.

Pure data and checks (no cdktf), used by the settings at construction and by the database and proxy constructs.

- MySQL 8.4 is the LTS release on RDS; RDS standard support for 8.0 ended on 2026-07-31, after which an 8.0
  instance runs on paid RDS Extended Support. 8.0 is therefore accepted only when set explicitly, with a warning.
- 8.4 creates users (the master user included) with ``caching_sha2_password`` (``authentication_policy``
  ``*:caching_sha2_password`` replaces the removed ``default_authentication_plugin``) and speaks TLS 1.2/1.3 only.
  Sources: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/MySQL.Concepts.FeatureSupport.html
  (MySQL 8.4 support on Amazon RDS) and
  https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Upgrade-v3-v84-security.html.
- RDS Proxy's client password auth type follows the DB's plugin: ``MYSQL_CACHING_SHA2_PASSWORD`` for 8.4,
  ``MYSQL_NATIVE_PASSWORD`` for 8.0 (``UserAuthConfig.ClientPasswordAuthType``,
  https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_UserAuthConfig.html).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TextIO

from modules.validation import SettingsError

DEFAULT_ENGINE_VERSION = "8.4"
DEFAULT_INSTANCE_CLASS = "db.t4g.micro"
EXTENDED_SUPPORT_MAJORS = {"8.0": "2026-07-31"}
"""Major versions past the end of RDS standard support, with that date."""

VERSION_PATTERN = re.compile(r"^(8\.[04])(\.\d+)?$")
ENGINE_VERSION_ALLOWED = "MySQL 8.4 or 8.4.<minor> (8.0 or 8.0.<minor>: Extended Support)"
INSTANCE_CLASS_PATTERN = re.compile(r"^db\.([a-z0-9-]+)\.([a-z0-9]+)$")
INSTANCE_CLASS_ALLOWED = "an RDS instance class such as db.t4g.micro"

#: Previous-generation families that RDS for MySQL 8.4 does not offer (8.4 runs on current generations only).
PREVIOUS_GENERATION_FAMILIES = ("t1", "t2", "m1", "m2", "m3", "m4", "r3", "r4")

#: Nominal memory (GiB) of the classes a small deployment uses; others need ``db_max_connections`` set.
CLASS_MEMORY_GIB = {
    "db.t3.micro": 1,
    "db.t3.small": 2,
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.t3.xlarge": 16,
    "db.t3.2xlarge": 32,
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.t4g.xlarge": 16,
    "db.t4g.2xlarge": 32,
    "db.m5.large": 8,
    "db.m6g.large": 8,
    "db.m6i.large": 8,
    "db.m7g.large": 8,
    "db.m8g.large": 8,
    "db.r5.large": 16,
    "db.r6g.large": 16,
    "db.r6i.large": 16,
    "db.r7g.large": 16,
    "db.r8g.large": 16,
}
MAX_CONNECTIONS_DIVISOR = 12582880
"""RDS for MySQL's default ``max_connections`` is ``{DBInstanceClassMemory/12582880}``."""


@dataclass(frozen=True)
class EngineVersion:
    """A validated MySQL engine version and what follows from it."""

    version: str

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not VERSION_PATTERN.match(self.version):
            raise SettingsError("db_engine_version", self.version, ENGINE_VERSION_ALLOWED)

    @property
    def major(self) -> str:
        return VERSION_PATTERN.match(self.version).group(1)

    @property
    def parameter_group_family(self) -> str:
        return f"mysql{self.major}"

    @property
    def client_password_auth_type(self) -> str:
        """How RDS Proxy authenticates password clients, matching the DB's default plugin."""
        return "MYSQL_CACHING_SHA2_PASSWORD" if self.major == "8.4" else "MYSQL_NATIVE_PASSWORD"

    @property
    def extended_support_since(self) -> str | None:
        return EXTENDED_SUPPORT_MAJORS.get(self.major)


def check_instance_class(instance_class: str, engine: EngineVersion) -> None:
    """Reject class names RDS does not have and previous-generation classes on 8.4."""
    match = INSTANCE_CLASS_PATTERN.match(instance_class) if isinstance(instance_class, str) else None
    if not match:
        raise SettingsError("db_instance_class", instance_class, INSTANCE_CLASS_ALLOWED)
    family, size = match.groups()
    if engine.major == "8.4" and family in PREVIOUS_GENERATION_FAMILIES:
        raise SettingsError(
            "db_instance_class",
            instance_class,
            "a current-generation class for MySQL 8.4 (not "
            + ", ".join(f"db.{f}.*" for f in PREVIOUS_GENERATION_FAMILIES)
            + "), e.g. db.t4g.micro",
        )
    if size == "micro" and not family.startswith("t"):
        raise SettingsError("db_instance_class", instance_class, "micro sizes of burstable (db.t*) classes only")


def estimated_max_connections(instance_class: str) -> int | None:
    """RDS's default ``max_connections`` for a known class, from its nominal memory (an upper estimate:
    RDS subtracts reserved memory first). None for classes not in ``CLASS_MEMORY_GIB``."""
    gib = CLASS_MEMORY_GIB.get(instance_class)
    return None if gib is None else gib * 1024**3 // MAX_CONNECTIONS_DIVISOR


def warn_extended_support(engine: EngineVersion, stream: TextIO | None = None) -> bool:
    """Print a synth-time warning when the version runs on paid Extended Support; True when it did."""
    since = engine.extended_support_since
    if since is None:
        return False
    print(
        f"warning: db_engine_version={engine.version}: RDS standard support for MySQL {engine.major} ended on "
        f"{since}; the instance runs on paid RDS Extended Support. Upgrade to MySQL {DEFAULT_ENGINE_VERSION} "
        "(see README, 'Upgrading from 8.0').",
        file=stream or sys.stderr,
    )
    return True
