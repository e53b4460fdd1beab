"""AppUserSecret in isolation: a generated password in a write-only secret value, encrypted with the given key."""

from __future__ import annotations

import pytest

from modules.app_user import AppUserSecret, AppUserSecretProps
from modules.validation import SettingsError
from tests.synth_support import TEST_KEY_ARN, only, synth_construct, walk


def _synth(**overrides):
    props = {"name_prefix": "t", "username": "reader", "kms_key_arn": TEST_KEY_ARN, **overrides}
    return synth_construct(lambda stack, ctx: AppUserSecret(stack, "app", AppUserSecretProps(**props)))


@pytest.fixture(scope="module")
def default_secret():
    return _synth()


def test_secret_is_named_after_the_user_and_encrypted_with_the_key(default_secret):
    secret = only(default_secret, "aws_secretsmanager_secret")
    assert (secret["name"], secret["kms_key_id"], secret["recovery_window_in_days"]) == (
        "t/db/reader",
        TEST_KEY_ARN,
        30,
    )


def test_value_is_write_only_json_of_the_user_and_a_generated_password(default_secret):
    ((name, generator),) = default_secret["ephemeral"]["aws_secretsmanager_random_password"].items()
    assert generator == {"password_length": 32, "exclude_punctuation": True, "require_each_included_type": True}
    version = only(default_secret, "aws_secretsmanager_secret_version")
    assert version["secret_string_wo"] == (
        f'${{jsonencode({{username = "reader", password = ephemeral.aws_secretsmanager_random_password.{name}'
        ".random_password})}"
    )
    assert version["secret_string_wo_version"] == 1
    assert not [path for path, _ in walk(version) if path.endswith((".secret_string", ".secret_binary"))]


def test_two_secrets_in_one_stack_get_their_own_generators():
    def build(stack, ctx):
        for user in ("one", "two"):
            AppUserSecret(stack, user, AppUserSecretProps(name_prefix="t", username=user, kms_key_arn=TEST_KEY_ARN))

    generators = synth_construct(build)["ephemeral"]["aws_secretsmanager_random_password"]
    assert len(generators) == 2


def test_a_new_password_version_and_an_immediate_delete_window_are_rendered():
    stack = _synth(password_version=3, recovery_window_days=0)
    assert only(stack, "aws_secretsmanager_secret_version")["secret_string_wo_version"] == 3
    assert only(stack, "aws_secretsmanager_secret")["recovery_window_in_days"] == 0


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("password_version", 0, "an integer from 1 to 1000000"),
        ("recovery_window_days", 3, "0 or an integer from 7 to 30"),
        ("recovery_window_days", 31, "0 or an integer from 7 to 30"),
    ],
)
def test_bad_props_are_refused_naming_the_field_and_range(field, value, allowed):
    with pytest.raises(SettingsError, match=rf"invalid setting {field}={value}: allowed {allowed}"):
        AppUserSecretProps(name_prefix="t", username="reader", kms_key_arn=TEST_KEY_ARN, **{field: value})
