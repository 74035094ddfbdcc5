"""AlterConfigs (33) and IncrementalAlterConfigs (44) for topics.

Broker settings are static: they live in the node's YAML file.
"""
from __future__ import annotations

from typing import Any, Callable

from kafka import errors
from kafka.protocol.admin import (
    AlterConfigsRequest, AlterConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
)

from broker.apis.describe_configs import BROKER, TOPIC, check_broker_resource
from broker.config import ConfigError, validate_topic_configs
from broker.errors import RequestError
from broker.protocol import api

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
LIST_SETTINGS = {"cleanup.policy"}


def replace_all(current: dict, resource, effective: Callable[[str], Any]) -> dict:
    return {c.name: c.value for c in resource.configs}


def apply_operations(current: dict, resource, effective: Callable[[str], Any]) -> dict:
    """IncrementalAlterConfigs; APPEND and SUBTRACT start from the effective value (the
    node's default when the topic sets none)."""
    configs = dict(current)
    for change in resource.configs:
        if change.config_operation == SET:
            configs[change.name] = change.value
        elif change.config_operation == DELETE:
            configs.pop(change.name, None)
        elif change.config_operation in (APPEND, SUBTRACT):
            if change.name not in LIST_SETTINGS:
                raise RequestError(errors.InvalidConfigurationError,
                                   f"{change.name}: APPEND and SUBTRACT apply to list settings only")
            current_value = configs.get(change.name, effective(change.name))
            items = [v for v in str(current_value).split(",") if v]
            values = [v for v in (change.value or "").split(",") if v]
            if change.config_operation == APPEND:
                items += [v for v in values if v not in items]
            else:
                items = [v for v in items if v not in values]
            configs[change.name] = ",".join(items)
        else:
            raise RequestError(errors.InvalidRequestError,
                               f"unknown config operation {change.config_operation}")
    return configs


async def alter(request, ctx, response_class, merge: Callable[[dict, object, Callable], dict]):
    node = ctx.node
    if (answer := await node.forward_to_controller(request, ctx)) is not None:
        return answer
    results = []
    for resource in request.resources:
        result = response_class.AlterConfigsResourceResponse(
            version=ctx.api_version, error_code=0, error_message=None,
            resource_type=resource.resource_type, resource_name=resource.resource_name)
        try:
            if resource.resource_type == BROKER:
                check_broker_resource(node, resource.resource_name)
                raise RequestError(errors.InvalidRequestError,
                                   "broker settings are static: edit the node's YAML file and "
                                   "restart it")
            if resource.resource_type != TOPIC:
                raise RequestError(errors.InvalidRequestError,
                                   f"resource type {resource.resource_type} is not supported")
            if not node.controller_active:
                raise RequestError(errors.NotControllerError, "no active controller is reachable")
            topic = node.topic(resource.resource_name)
            try:
                configs = validate_topic_configs(merge(
                    topic.configs, resource, lambda key: node.topic_config(topic, key)))
            except ConfigError as exc:
                raise RequestError(errors.InvalidConfigurationError, str(exc)) from None
            if not request.validate_only:
                await node.controller.set_topic_configs(topic.name, configs)
        except RequestError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return response_class(version=ctx.api_version, throttle_time_ms=0, responses=results)


@api(AlterConfigsRequest, 0, 2)
async def alter_configs(request, ctx):
    return await alter(request, ctx, AlterConfigsResponse, replace_all)


@api(IncrementalAlterConfigsRequest, 0, 1)
async def incremental_alter_configs(request, ctx):
    return await alter(request, ctx, IncrementalAlterConfigsResponse, apply_operations)
