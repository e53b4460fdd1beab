"""Deployment environments: which target (local emulator or AWS), which settings, which state backend.

Each ``environments/<name>.json`` becomes one CDKTF stack named ``<name>``:

    {"target": "local" | "aws",
     "settings": {<StackSettings field>: value, ...},
     "backend": {"s3": {"bucket": ..., "key": ..., "region": ...}},       # optional, aws only
     "allowed_account_ids": ["123456789012"]}                              # optional, aws only

Environment variables override settings without editing files: ``SMS_<FIELD>`` (e.g.
``SMS_MAX_CONNECTIONS_PERCENT=80``) applies to every environment, ``SMS_<ENV>__<FIELD>`` to one
(``SMS_LOCAL__LAMBDA_MEMORY_MB=512``). ``SMS_ENVIRONMENTS=local`` synthesizes only the listed stacks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_settings import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from modules.local_target import DEFAULT_LOCAL_ENDPOINT, LOCAL_ENDPOINT_VARIABLE
from modules.project import ENVIRONMENTS_DIR_NAME, REPO_ROOT, default_state_file
from modules.settings import SettingsError, StackSettings

ENVIRONMENTS_DIR = REPO_ROOT / ENVIRONMENTS_DIR_NAME
TARGETS = ("local", "aws")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class S3Backend:
    """Remote state with S3-native locking (Terraform >= 1.10 ``use_lockfile``), encrypted at rest."""

    bucket: str
    key: str
    region: str
    use_lockfile: bool = True
    encrypt: bool = True
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", self.bucket or ""):
            raise SettingsError("backend.s3.bucket", self.bucket, "an S3 bucket name (3-63 lowercase characters)")
        if not self.key or self.key.startswith("/"):
            raise SettingsError("backend.s3.key", self.key, "a relative object key such as sms/prod.tfstate")


@dataclass(frozen=True)
class Environment:
    name: str
    target: str
    settings: StackSettings
    backend: S3Backend | None = None
    allowed_account_ids: tuple[str, ...] = ()
    local_endpoint: str = DEFAULT_LOCAL_ENDPOINT
    """Where the local AWS emulator listens (local target only)."""

    def __post_init__(self) -> None:
        if not _ENV_NAME.match(self.name):
            raise SettingsError("environment name", self.name, "lowercase letters, digits and hyphens")
        if self.target not in TARGETS:
            raise SettingsError(f"{self.name}.target", self.target, "one of " + ", ".join(TARGETS))
        if self.target == "local" and self.backend is not None:
            raise SettingsError(f"{self.name}.backend", "s3", "no remote backend for the local target")
        if not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$", self.local_endpoint):
            raise SettingsError(
                LOCAL_ENDPOINT_VARIABLE,
                self.local_endpoint,
                f"an http:// URL on the loopback interface, e.g. {DEFAULT_LOCAL_ENDPOINT}",
            )
        for account in self.allowed_account_ids:
            if not re.match(r"^\d{12}$", account):
                raise SettingsError(f"{self.name}.allowed_account_ids", account, "12-digit AWS account ids")

    @property
    def state_file(self) -> Path:
        """Local backend state path (when no S3 backend is configured)."""
        return default_state_file(self.name)


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of the process environment."""

    def __init__(self, environ: Mapping[str, str], prefix: str):
        self._environ = environ
        super().__init__(StackSettings, case_sensitive=False, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _env_overrides(env_name: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """``SMS_<FIELD>`` for every environment, then ``SMS_<ENV>__<FIELD>`` for this one (applied last, so it wins)."""
    scoped = f"SMS_{env_name.upper().replace('-', '_')}__"
    return {**_EnvironSource(environ, "SMS_")(), **_EnvironSource(environ, scoped)()}


def load_environment(path: Path, environ: Mapping[str, str] | None = None) -> Environment:
    environ = os.environ if environ is None else environ
    name = path.stem
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SettingsError(str(path), f"line {exc.lineno}", f"valid JSON ({exc.msg})") from None
    unknown = set(raw) - {"target", "settings", "backend", "allowed_account_ids"}
    if unknown:
        raise SettingsError(
            f"{name}.{sorted(unknown)[0]}",
            raw[sorted(unknown)[0]],
            "keys target, settings, backend, allowed_account_ids",
        )
    settings = StackSettings(**{**raw.get("settings", {}), **_env_overrides(name, environ)})
    backend_raw = raw.get("backend")
    backend = None
    if backend_raw:
        if set(backend_raw) != {"s3"}:
            raise SettingsError(f"{name}.backend", backend_raw, '{"s3": {...}} or nothing (local state file)')
        backend = S3Backend(**backend_raw["s3"])
    return Environment(
        name=name,
        target=raw.get("target", ""),
        settings=settings,
        backend=backend,
        allowed_account_ids=tuple(raw.get("allowed_account_ids", ())),
        local_endpoint=environ.get(LOCAL_ENDPOINT_VARIABLE, DEFAULT_LOCAL_ENDPOINT),
    )


def load_environments(
    directory: Path = ENVIRONMENTS_DIR, environ: Mapping[str, str] | None = None
) -> list[Environment]:
    environ = os.environ if environ is None else environ
    wanted = {n.strip() for n in environ.get("SMS_ENVIRONMENTS", "").split(",") if n.strip()}
    paths = sorted(directory.glob("*.json"))
    available = {p.stem for p in paths}
    missing = wanted - available
    if missing:
        raise SettingsError(
            "SMS_ENVIRONMENTS",
            ",".join(sorted(missing)),
            "names of files in environments/: " + ", ".join(sorted(available)),
        )
    return [load_environment(p, environ) for p in paths if not wanted or p.stem in wanted]
