"""Props own their defaults and checks: every field documented with its default, every rule worded once."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import modules
from modules.props import Props
from modules.settings_docs import python_default, split_doc
from modules.validation import PropError, SettingsError


def _all_props() -> list[type[Props]]:
    for module in pkgutil.iter_modules(modules.__path__):
        importlib.import_module(f"modules.{module.name}")
    found, todo = [], [Props]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return sorted(set(found), key=lambda cls: cls.__name__)


PROPS = _all_props()


def test_every_construct_has_props_classes():
    names = {cls.__name__ for cls in PROPS}
    assert {
        "NetworkProps",
        "DatabaseProps",
        "AppUserSecretProps",
        "ProxyProps",
        "ProxyAttributes",
        "FunctionProps",
        "MigratorProps",
        "HttpApiProps",
        "SecretsManagerEndpointProps",
        "StackKeyProps",
        "MonitoringProps",
        "ServerlessMysqlApiProps",
    } <= names


@pytest.mark.parametrize("props", PROPS, ids=lambda cls: cls.__name__)
def test_every_field_says_its_default_or_that_it_is_required(props):
    problems = []
    for name, field in props.model_fields.items():
        meaning, stated = split_doc(field)
        if len(meaning) < 10:
            problems.append(f"{name}: no docstring saying what it is")
        elif field.is_required() != (stated is None):
            problems.append(f"{name}: docstring must end in {'Required.' if field.is_required() else 'Default: ...'}")
        elif not field.is_required():
            expected = python_default(field.default)
            if expected is not None and not stated.startswith(expected):
                problems.append(f"{name}: docstring says 'Default: {stated}', the default is {expected}")
    assert problems == []


def test_an_error_names_the_props_class_the_field_the_value_and_the_range():
    from modules.database_options import DatabaseOptions

    with pytest.raises(PropError) as refused:
        DatabaseOptions(port=80)
    assert str(refused.value) == "invalid prop DatabaseOptions.port=80: allowed an integer from 1150 to 65535"
    assert isinstance(refused.value, SettingsError) and isinstance(refused.value, ValueError)
    assert (refused.value.owner, refused.value.field_name, refused.value.value) == ("DatabaseOptions", "port", 80)


def test_booleans_are_not_integers_and_unknown_fields_are_named():
    from modules.function_options import FunctionOptions

    with pytest.raises(
        PropError, match=r"FunctionOptions\.reserved_concurrency=True: allowed an integer from 1 to 1000"
    ):
        FunctionOptions(reserved_concurrency=True)
    with pytest.raises(PropError, match=r"FunctionOptions\.memory=512: allowed a known prop: .*memory_mb"):
        FunctionOptions(memory=512)


def test_nested_options_given_as_mappings_are_named_from_the_outer_props():
    from modules.app_props import ServerlessMysqlApiProps

    with pytest.raises(PropError) as refused:
        ServerlessMysqlApiProps(network={"db_subnet_cidrs": ["10.1.0.0/24", "10.0.12.0/24"]})
    assert str(refused.value) == (
        "invalid prop ServerlessMysqlApiProps.network.db_subnet_cidrs='10.1.0.0/24': "
        "allowed blocks inside network.vpc_cidr 10.0.0.0/16"
    )


def test_replace_validates_like_construction():
    from modules.proxy_options import ProxyOptions

    assert ProxyOptions().replace(max_connections_percent=90).max_connections_percent == 90
    with pytest.raises(PropError, match=r"max_idle_connections_percent=50: allowed an integer from 0 to"):
        ProxyOptions().replace(max_connections_percent=40)


def test_values_terraform_knows_only_at_apply_pass_the_checks():
    from cdktf import TerraformStack, TerraformVariable, Testing

    from modules.alarms import AlarmOptions
    from modules.network_options import ExistingVpc

    stack = TerraformStack(Testing.app(), "tokens")
    topic = TerraformVariable(stack, "topic", type="string").string_value
    subnets = TerraformVariable(stack, "subnets", type="list(string)").list_value
    assert AlarmOptions(topic_arn=topic).topic_arn == topic
    existing = ExistingVpc(vpc_id="vpc-0123456789abcdef0", lambda_subnet_ids=subnets, db_subnet_ids=subnets)
    assert list(existing.db_subnet_ids) == subnets
    with pytest.raises(PropError, match=r"AlarmOptions\.topic_arn='arn:aws:sqs"):
        AlarmOptions(topic_arn="arn:aws:sqs:ap-northeast-1:123456789012:q")
