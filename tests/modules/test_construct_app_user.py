"""AppUserSecret in isolation: a generated password in a write-only secret value, encrypted with the given key."""

from __future__ import annotations

import pytest

from modules.app_user import AppUserSecret, AppUserSecretProps
from modules.validation import PropError
from tests.modules.construct_support import ABSENT, Template
from tests.modules.synth_support import TEST_KEY_ARN


def _props(**overrides) -> AppUserSecretProps:
    return AppUserSecretProps(**{"name_prefix": "t", "username": "reader", "kms_key_arn": TEST_KEY_ARN, **overrides})


def _synth(**overrides) -> Template:
    return Template.of(lambda stack, ctx: AppUserSecret(stack, "app", _props(**overrides)))


@pytest.fixture(scope="module")
def default_secret() -> Template:
    return _synth()


def test_secret_is_named_after_the_user_and_encrypted_with_the_key(default_secret):
    default_secret.has_resource_properties(
        "aws_secretsmanager_secret", {"name": "t/db/reader", "kms_key_id": TEST_KEY_ARN, "recovery_window_in_days": 30}
    )


def test_value_is_write_only_json_of_the_user_and_a_generated_password(default_secret):
    ((name, generator),) = default_secret.json["ephemeral"]["aws_secretsmanager_random_password"].items()
    assert generator == {"password_length": 32, "exclude_punctuation": True, "require_each_included_type": True}
    default_secret.has_resource_properties(
        "aws_secretsmanager_secret_version",
        {
            "secret_string_wo": f'${{jsonencode({{username = "reader", password = '
            f"ephemeral.aws_secretsmanager_random_password.{name}.random_password}})}}",
            "secret_string_wo_version": 1,
            "secret_string": ABSENT,
            "secret_binary": ABSENT,
        },
    )


def test_two_secrets_in_one_stack_get_their_own_generators():
    def build(stack, ctx):
        for user in ("one", "two"):
            AppUserSecret(stack, user, _props(username=user))

    assert len(Template.of(build).json["ephemeral"]["aws_secretsmanager_random_password"]) == 2


def test_a_new_password_version_and_an_immediate_delete_window_are_rendered():
    stack = _synth(password_version=3, recovery_window_days=0)
    stack.has_resource_properties("aws_secretsmanager_secret_version", {"secret_string_wo_version": 3})
    stack.has_resource_properties("aws_secretsmanager_secret", {"recovery_window_in_days": 0})


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("password_version", 0, "an integer from 1 to 1000000"),
        ("recovery_window_days", 3, "0 or an integer from 7 to 30"),
        ("recovery_window_days", 31, "0 or an integer from 7 to 30"),
        ("username", "app-user", "1-16 letters, digits or underscores"),
    ],
)
def test_bad_props_are_refused_naming_the_field_and_range(field, value, allowed):
    with pytest.raises(PropError, match=rf"invalid prop AppUserSecretProps\.{field}={value!r}: allowed {allowed}"):
        _props(**{field: value})
