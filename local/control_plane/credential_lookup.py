"""The emulator's side of the credentials lookup (``local.common.emulator_credentials``), run inside moto's server.

moto keeps the secrets of the keys it issues in memory. Its debug dump (``/moto-api/data.json``) holds them too, but
it serializes every backend (seconds, megabytes) and fails outright once a Lambda function exists (it touches
Docker). So the launcher adds one route to moto's own ``/moto-api/`` that answers for a single access key id, read
from the same in-memory backends moto's request authentication reads (``moto.iam.access_control``): IAM users' keys
and STS assume-role sessions, in every account and partition. Sessions from GetSessionToken/GetFederationToken are
not recorded by moto and are answered 404 like any unknown key.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from typing import Any

from local.common.emulator_credentials import ACCESS_KEY_ID, ASSUMED_ROLE, LOOKUP_PATH, USER

_JSON = {"Content-Type": "application/json"}


def install() -> None:
    """Register the route with moto's ``/moto-api/`` app (before the server builds its routes)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + LOOKUP_PATH + "$"] = credentials_response


def credentials_response(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    if getattr(request, "method", "POST") != "POST":
        return 405, _JSON, json.dumps({"message": f"use POST {LOOKUP_PATH} with {{'AccessKeyId': ...}}"})
    try:
        access_key_id = json.loads(request.get_data() or b"{}")["AccessKeyId"]
    except (ValueError, KeyError, TypeError):
        return 400, _JSON, json.dumps({"message": 'expected a JSON body {"AccessKeyId": "AKIA..."}'})
    if not isinstance(access_key_id, str) or not ACCESS_KEY_ID.match(access_key_id):
        return 400, _JSON, json.dumps({"message": "AccessKeyId must be AKIA/ASIA and 16 of A-Z, 0-9"})
    described = describe_access_key(access_key_id)
    if described is None:
        return 404, _JSON, json.dumps({"message": f"no access key {access_key_id} was issued by this emulator"})
    return 200, _JSON, json.dumps(described)


def describe_access_key(access_key_id: str) -> dict[str, Any] | None:
    """The key's secret, principal and identity policies, or None when no user or session holds it."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for backend in _backends(sts_backends):
        for session in backend.assumed_roles:
            if session.access_key_id == access_key_id:
                return _assumed_role(session, iam_backends)
    for backend in _backends(iam_backends):
        for user in backend.users.values():
            for key in user.access_keys:
                if key.access_key_id == access_key_id:
                    return _user(user, key, backend)
    return None


def _backends(backend_dict: Any) -> Iterator[Any]:
    """Every backend moto has created (accounts x partitions), without creating new ones."""
    for account_id in list(backend_dict.keys()):
        accounts = backend_dict[account_id]
        for name in list(accounts.keys()):
            yield accounts[name]


def _user(user: Any, key: Any, backend: Any) -> dict[str, Any]:
    policies = _inline(f"user/{user.name}", user.policies) + _attached(user.managed_policies)
    for group in backend.get_groups_for_user(user.name):
        policies += _inline(f"group/{group.name}", group.policies) + _attached(group.managed_policies)
    return {
        "Kind": USER,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
        "SessionToken": "",
        "Status": key.status,
        "Expiration": None,
        "PrincipalArn": user.arn,
        "RoleArn": "",
        "Policies": policies,
        "SessionPolicy": "",
    }


def _assumed_role(session: Any, iam_backends: Any) -> dict[str, Any]:
    policies: list[dict[str, str]] = []
    for backend in _backends(iam_backends):
        role = next((r for r in backend.roles.values() if r.arn == session.role_arn), None)
        if role is not None:  # moto lets anyone assume a role that does not exist: that session may do nothing
            policies = _inline(f"role/{role.name}", role.policies) + _attached(role.managed_policies)
            break
    return {
        "Kind": ASSUMED_ROLE,
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key,
        "SessionToken": session.session_token,
        "Status": "Active",
        "Expiration": calendar.timegm(session.expiration.utctimetuple()),  # moto keeps naive UTC times
        "PrincipalArn": session.arn,
        "RoleArn": session.role_arn,
        "Policies": policies,
        "SessionPolicy": session.policy or "",
    }


def _inline(owner: str, documents: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": f"{owner}:inline/{name}", "Document": _document(text)} for name, text in documents.items()]


def _attached(policies: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for arn, policy in policies.items():
        default = next((v for v in policy.versions if v.is_default), None)
        if default is not None:
            out.append({"Name": arn, "Document": _document(default.document)})
    return out


def _document(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
