"""DescribeConfigs (32): a topic's effective configs and where each value comes from;
the node's own (static) settings for a broker resource."""
from __future__ import annotations

from kafka import errors
from kafka.protocol.admin import DescribeConfigsRequest, DescribeConfigsResponse

from broker.config import NODE_SETTINGS, TOPIC_DEFAULT_FROM_NODE, TOPIC_SETTINGS, Setting
from broker.errors import RequestError
from broker.protocol import api

Result = DescribeConfigsResponse.DescribeConfigsResult
Entry = Result.DescribeConfigsResourceResult
Synonym = Entry.DescribeConfigsSynonym

TOPIC, BROKER = 2, 4
# ConfigSource values
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5


def config_string(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def entry(setting: Setting, value, source: int, version: int, read_only: bool,
          synonyms: list[Synonym]) -> Entry:
    """One config; a sensitive one (a password) without its value, as Kafka answers."""
    return Entry(version=version, name=setting.name,
                 value=None if setting.sensitive else config_string(value),
                 read_only=read_only, config_source=source, is_default=source == DEFAULT_CONFIG,
                 is_sensitive=setting.sensitive, synonyms=synonyms,
                 config_type=setting.config_type, documentation=setting.doc)


def node_source(node, key: str) -> int:
    return STATIC_BROKER_CONFIG if key in node.config.explicit else DEFAULT_CONFIG


def describe_topic_configs(node, topic, keys: list[str] | None, version: int,
                           with_synonyms: bool = False) -> list[Entry]:
    entries = []
    for name, setting in TOPIC_SETTINGS.items():
        if keys is not None and name not in keys:
            continue
        synonyms = []
        node_key = TOPIC_DEFAULT_FROM_NODE.get(name)
        if name in topic.configs:
            source = DYNAMIC_TOPIC_CONFIG
            synonyms.append(Synonym(version=version, name=name,
                                    value=config_string(topic.configs[name]), source=source))
        else:
            source = node_source(node, node_key) if node_key else DEFAULT_CONFIG
        if node_key and with_synonyms:
            synonyms.append(Synonym(version=version, name=node_key,
                                    value=config_string(node.config[node_key]),
                                    source=node_source(node, node_key)))
        entries.append(entry(setting, node.topic_config(topic, name), source, version,
                             read_only=False, synonyms=synonyms if with_synonyms else []))
    return entries


def describe_node_configs(node, keys: list[str] | None, version: int) -> list[Entry]:
    return [entry(setting, node.config[name], node_source(node, name), version,
                  read_only=True, synonyms=[])
            for name, setting in NODE_SETTINGS.items() if keys is None or name in keys]


def check_broker_resource(node, name: str) -> None:
    if name not in ("", str(node.node_id)):
        raise RequestError(errors.InvalidRequestError,
                           f"broker {name!r} is not this node ({node.node_id})")


@api(DescribeConfigsRequest, 1, 4)
async def describe_configs(request, ctx):
    node = ctx.node
    version = ctx.api_version
    results = []
    for resource in request.resources:
        result = Result(version=version, error_code=0, error_message=None,
                        resource_type=resource.resource_type, resource_name=resource.resource_name,
                        configs=[])
        try:
            if resource.resource_type == TOPIC:
                topic = node.topic(resource.resource_name)
                result.configs = describe_topic_configs(node, topic, resource.configuration_keys,
                                                        version, request.include_synonyms)
            elif resource.resource_type == BROKER:
                check_broker_resource(node, resource.resource_name)
                result.configs = describe_node_configs(node, resource.configuration_keys, version)
            else:
                raise RequestError(errors.InvalidRequestError,
                                   f"resource type {resource.resource_type} is not supported")
        except RequestError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return DescribeConfigsResponse(version=version, throttle_time_ms=0, results=results)
