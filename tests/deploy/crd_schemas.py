"""Structural schemas of the custom resources the manifests use, for the fields we rely on.

The Kubernetes schemas (kubernetes-validate) cover only built-in kinds. These JSON schemas are
written from the KEDA (v2.12+) and Prometheus Operator (monitoring.coreos.com/v1) API references,
and are strict where we write fields: an unknown or misspelt field fails, as it would be dropped or
refused by the real CRD. Extend them when the manifests start using another field.
"""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": STRING_MAP,
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["key", "operator"],
            "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}


def _metadata(namespaced: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": NAME, "namespace": NAME, "labels": STRING_MAP, "annotations": STRING_MAP},
    }


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _metadata(), "spec": spec},
    }


_HPA_POLICY = {
    "type": "object", "additionalProperties": False, "required": ["type", "value", "periodSeconds"],
    "properties": {"type": {"enum": ["Pods", "Percent"]}, "value": {"type": "integer", "minimum": 1},
                   "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800}},
}
_HPA_RULES = {
    "type": "object", "additionalProperties": False,
    "properties": {"stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                   "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
                   "policies": {"type": "array", "items": _HPA_POLICY}},
}

SCALED_OBJECT = _resource("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object",
    "additionalProperties": False,
    "required": ["scaleTargetRef", "triggers"],
    "properties": {
        "scaleTargetRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                           "properties": {"name": NAME, "kind": {"type": "string"}, "apiVersion": {"type": "string"},
                                          "envSourceContainerName": {"type": "string"}}},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "idleReplicaCount": {"type": "integer", "minimum": 0},
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "initialCooldownPeriod": {"type": "integer", "minimum": 0},
        "advanced": {"type": "object", "additionalProperties": False, "properties": {
            "restoreToOriginalReplicaCount": {"type": "boolean"},
            "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string"},
                "behavior": {"type": "object", "additionalProperties": False,
                             "properties": {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES}}}}}},
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["type", "metadata"],
            "properties": {
                "type": {"type": "string"}, "name": {"type": "string"}, "useCachedMetrics": {"type": "boolean"},
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                # KEDA refuses non-string metadata values ("allowIdleConsumers: false" must be quoted).
                "metadata": STRING_MAP,
                "authenticationRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                                      "properties": {"name": NAME, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}},
            }}},
    },
})

# Parameters of KEDA's `kafka` scaler (keda.sh/docs/latest/scalers/apache-kafka).
KAFKA_TRIGGER_PARAMETERS = frozenset({
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
    "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "partitionLimitation",
    "version", "sasl", "tls", "unsafeSsl",
})


def kafka_trigger_problems(trigger: dict[str, Any]) -> list[str]:
    """What is wrong with a KEDA kafka trigger, for the parameters we use."""
    meta = trigger["metadata"]
    problems = []
    if trigger["type"] != "kafka":
        problems.append(f"type {trigger['type']!r} is not kafka")
    unknown = set(meta) - KAFKA_TRIGGER_PARAMETERS
    if unknown:
        problems.append(f"unknown parameters {sorted(unknown)}")
    if not ({"bootstrapServers", "bootstrapServersFromEnv"} & set(meta)):
        problems.append("no bootstrapServers(FromEnv)")
    for required in ("consumerGroup", "topic"):
        if required not in meta:
            problems.append(f"no {required}")
    for number in ("lagThreshold", "activationLagThreshold"):
        if number in meta and not str(meta[number]).isdigit():
            problems.append(f"{number} must be a whole number, not {meta[number]!r}")
    if meta.get("offsetResetPolicy", "latest") not in ("earliest", "latest"):
        problems.append("offsetResetPolicy must be earliest or latest")
    for flag in ("allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag"):
        if flag in meta and meta[flag] not in ("true", "false"):
            problems.append(f"{flag} must be \"true\" or \"false\"")
    return problems


SERVICE_MONITOR = _resource("monitoring.coreos.com/v1", "ServiceMonitor", {
    "type": "object",
    "additionalProperties": False,
    "required": ["selector", "endpoints"],
    "properties": {
        "selector": LABEL_SELECTOR,
        "namespaceSelector": {"type": "object", "additionalProperties": False,
                              "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
        "jobLabel": {"type": "string"},
        "endpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"port": {"type": "string"}, "targetPort": {}, "path": {"type": "string", "pattern": "^/"},
                           "scheme": {"enum": ["http", "https"]}, "interval": DURATION, "scrapeTimeout": DURATION,
                           "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                           "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"}}}},
    },
})

PROMETHEUS_RULE = _resource("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object",
    "additionalProperties": False,
    "required": ["groups"],
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "rules"],
        "properties": {
            "name": {"type": "string", "minLength": 1}, "interval": DURATION,
            "rules": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["expr"],
                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                               "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                               "expr": {"type": "string", "minLength": 1}, "for": DURATION,
                               "keep_firing_for": DURATION, "labels": STRING_MAP, "annotations": STRING_MAP}}},
        }}}},
})

# The kafka scaler's authentication parameters (keda.sh/docs/scalers/apache-kafka, "Authentication Parameters").
KAFKA_AUTH_PARAMETERS = frozenset({"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword", "unsafeSsl"})
TRIGGER_AUTHENTICATION = _resource("keda.sh/v1alpha1", "TriggerAuthentication", {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "secretTargetRef": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["parameter", "name", "key"],
            "properties": {"parameter": {"enum": sorted(KAFKA_AUTH_PARAMETERS)}, "name": NAME,
                           "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"}}}},
        "env": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["parameter", "name"],
            "properties": {"parameter": {"enum": sorted(KAFKA_AUTH_PARAMETERS)}, "name": {"type": "string"},
                           "containerName": {"type": "string"}}}},
    },
})

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com", "PrometheusRule"): PROMETHEUS_RULE,
}
