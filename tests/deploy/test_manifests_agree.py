"""The image and every manifest that runs it agree: the port it listens on, the commands it
runs, the user it runs as, the probe paths (routes the app really serves), the drain deadline
against the platform's kill deadline, and the metric the autoscaler reads (a series chatworks
really exports). `make deploy-check` validates each file on its own; this checks them together.
"""

from __future__ import annotations

import json
import re
import shlex

import jsonschema
import pytest
import typer
import yaml

from chatworks.api.routes import ops
from chatworks.cli import app as cli_app
from chatworks.settings import Settings
from chatworks.telemetry.metrics import REGISTRY
from tests.servers import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s" / "base"


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, for the final stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    final = text.split("\nFROM ")[-1]
    found: dict[str, list[str]] = {}
    for line in final.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


IMAGE = _dockerfile()
PORT = int(IMAGE["EXPOSE"][0])
UID = int(IMAGE["USER"][0].split(":")[0])
ENTRYPOINT = json.loads(IMAGE["ENTRYPOINT"][0])
CMD = json.loads(IMAGE["CMD"][0])
HEALTH, READY = "/healthz", "/readyz"


def _yaml(path):
    return yaml.safe_load(path.read_text())


def _pod(path) -> dict:
    return _yaml(path)["spec"]["template"]["spec"]


def _commands() -> set[str]:
    return set(typer.main.get_command(cli_app).commands)


def test_the_image_serves_on_its_port_as_a_fixed_user_and_checks_its_own_liveness():
    assert f"CHATWORKS_PORT={PORT}" in IMAGE["ENV"][0].split()
    assert ENTRYPOINT == ["chatworks"] and CMD[0] in _commands()
    healthcheck = IMAGE["HEALTHCHECK"][0]
    assert HEALTH in healthcheck and "CHATWORKS_PORT" in healthcheck
    assert UID >= 10000  # not a uid that exists on the host


def test_probe_paths_are_routes_the_app_serves():
    assert {HEALTH, READY} <= {route.path for route in ops.router.routes}


def test_the_deployment_runs_the_image_as_built():
    pod = _pod(K8S / "deployment.yaml")
    container = pod["containers"][0]
    assert container["args"][0] in _commands() and container["args"] == CMD
    assert "command" not in container  # the image's ENTRYPOINT stays
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORT}
    for probe, path in [("startupProbe", HEALTH), ("livenessProbe", HEALTH),
                        ("readinessProbe", READY)]:  # fmt: skip
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    assert pod["securityContext"]["runAsUser"] == UID
    annotations = _yaml(K8S / "deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == PORT


def test_the_service_and_ingress_reach_the_named_port():
    service = _yaml(K8S / "service.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = _yaml(K8S / "ingress.yaml")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}


def test_the_migration_job_runs_a_real_command_as_the_image_user():
    pod = _pod(K8S / "migration-job.yaml")
    assert pod["containers"][0]["args"] == ["migrate"] and "migrate" in _commands()
    assert pod["securityContext"]["runAsUser"] == UID


def test_pods_drain_before_kubernetes_kills_them():
    pod = _pod(K8S / "deployment.yaml")
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    literals = _yaml(K8S / "kustomization.yaml")["configMapGenerator"][0]["literals"]
    config = dict(item.split("=", 1) for item in literals)
    drain = float(config["CHATWORKS_SHUTDOWN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain


def test_every_configured_setting_is_one_chatworks_reads():
    """A misspelt CHATWORKS_* name in a ConfigMap is ignored silently by the app: not here."""
    known = {f"CHATWORKS_{name.upper()}" for name in Settings.model_fields}
    for kustomization in (K8S, *(DEPLOY / "k8s" / "overlays").iterdir()):
        for generator in _yaml(kustomization / "kustomization.yaml").get("configMapGenerator", []):
            names = {item.split("=", 1)[0] for item in generator["literals"]}
            assert {n for n in names if n.startswith("CHATWORKS_")} <= known, kustomization


def test_the_autoscaler_reads_series_chatworks_exports():
    hpa = _yaml(K8S / "hpa.yaml")
    custom = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    exported = {metric.name for metric in REGISTRY.collect()}
    assert custom and set(custom) <= exported


KEDA = DEPLOY / "k8s" / "components" / "keda" / "scaledobject.yaml"


def _patched(overlay: str, kind: str) -> dict[str, object]:
    """path -> value of the JSON-patch `replace`s an overlay applies to `kind`."""
    found = {}
    for patch in _yaml(DEPLOY / "k8s" / "overlays" / overlay / "kustomization.yaml")["patches"]:
        if patch["target"]["kind"] == kind:
            found |= {op["path"]: op["value"] for op in yaml.safe_load(patch["patch"])}
    return found


def test_keda_scales_on_queue_depth_with_the_hpa_policy():
    """The ScaledObject (components/keda) reads a series chatworks exports and keeps the HPA's
    bounds, targets and behaviour, so switching autoscaler does not change how pods scale."""
    hpa, scaled = _yaml(K8S / "hpa.yaml")["spec"], _yaml(KEDA)["spec"]
    triggers = {t["type"]: t for t in scaled["triggers"]}
    query = triggers["prometheus"]["metadata"]["query"]
    (waiting,) = [m["pods"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert waiting["metric"]["name"] in query
    assert waiting["metric"]["name"] in {metric.name for metric in REGISTRY.collect()}
    assert triggers["prometheus"]["metadata"]["threshold"] == waiting["target"]["averageValue"]
    (cpu,) = [m["resource"] for m in hpa["metrics"] if m["type"] == "Resource"]
    assert triggers["cpu"]["metadata"]["value"] == str(cpu["target"]["averageUtilization"])
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]
    prod, prod_keda = (
        _patched("prod", "HorizontalPodAutoscaler"),
        _patched("prod-keda", "ScaledObject"),
    )
    assert (prod_keda["/spec/minReplicaCount"], prod_keda["/spec/maxReplicaCount"]) == (
        prod["/spec/minReplicas"],
        prod["/spec/maxReplicas"],
    )


@pytest.mark.parametrize(
    "mistake",
    [
        lambda s: s.update(minReplicas=s.pop("minReplicaCount")),  # the HPA's spelling
        lambda s: s["triggers"][0]["metadata"].update(threshold=2),  # KEDA wants strings
        lambda s: s["triggers"][0]["metadata"].pop("query"),
        lambda s: s["triggers"][1].pop("metricType"),
        lambda s: s.pop("scaleTargetRef"),
    ],
)
def test_the_vendored_keda_schema_accepts_the_shipped_object_and_rejects_mistakes(mistake):
    schema = json.loads((DEPLOY / "k8s" / "schemas" / "keda-scaledobject.json").read_text())
    shipped = _yaml(KEDA)
    jsonschema.validate(shipped, schema)
    mistake(shipped["spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(shipped, schema)


def test_compose_runs_the_same_image_port_and_commands():
    services = _yaml(DEPLOY / "compose.yaml")["services"]
    server = services["chatworks"]
    assert server["command"] == CMD and services["migrate"]["command"] == ["migrate"]
    assert [p.rsplit(":", 1)[1] for p in server["ports"]] == [str(PORT)]
    default_drain = Settings.model_fields["shutdown_timeout_s"].default
    assert float(server["stop_grace_period"].rstrip("s")) > default_drain
    prometheus = _yaml(DEPLOY / "compose.yaml")["configs"]["prometheus"]["content"]
    assert f"chatworks:{PORT}" in prometheus


def test_cloud_run_and_ecs_use_the_image_port_and_probe_paths():
    run = (DEPLOY / "terraform" / "gcp-cloudrun" / "run.tf").read_text()
    assert set(re.findall(r"(?:container_port|port)\s*=\s*(\d+)", run)) == {str(PORT)}
    assert re.findall(r'path\s*=\s*"([^"]+)"', run) == [READY, HEALTH]  # startup, liveness
    drain = re.search(r'CHATWORKS_SHUTDOWN_TIMEOUT_S\s*=\s*"([\d.]+)"', run)
    assert float(drain.group(1)) < 10  # Cloud Run kills 10 s after SIGTERM
    ecs = (DEPLOY / "terraform" / "aws-ecs" / "ecs.tf").read_text()
    assert f"containerPort = {PORT}" in ecs and f"container_port   = {PORT}" in ecs
    assert f'path                = "{READY}"' in ecs
    stop = int(re.search(r"stopTimeout = (\d+)", ecs).group(1))
    drain = re.search(r'"CHATWORKS_SHUTDOWN_TIMEOUT_S", value = "([\d.]+)"', ecs)
    assert float(drain.group(1)) < stop


def test_the_gpu_vm_starts_the_image_with_a_real_command():
    script = (DEPLOY / "terraform" / "gcp-gpu-vm" / "startup.sh.tftpl").read_text()
    chatworks_run = script.split("docker run")[-1]
    assert shlex.split(chatworks_run.replace("\\\n", " "))[-1] in _commands()


def test_compose_sends_alerts_through_alertmanager_to_the_receiver():
    compose = _yaml(DEPLOY / "compose.yaml")
    prometheus = yaml.safe_load(compose["configs"]["prometheus"]["content"])
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    services = compose["services"]
    mounted = "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
    assert mounted in services["alertmanager"]["volumes"]
    # The shipped route's 127.0.0.1 address reaches the receiver: they share a network.
    receiver = services["alert-receiver"]
    assert receiver["network_mode"] == "service:alertmanager"
    command = receiver["command"]
    assert command[:2] == ["alerts", "receive"] and "alerts" in _commands()
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    routes = _yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    (webhook,) = routes["receivers"]
    assert webhook["webhook_configs"][0]["url"] == f"http://{flags['--host']}:{flags['--port']}/"
