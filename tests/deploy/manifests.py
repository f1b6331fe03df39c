"""Render ``deploy/k8s/`` with ``kubectl kustomize`` and read what a pod would really get.

What the tests check is the rendered output, as ``kubectl apply -k`` would send it, not the
files: a patch, a name suffix or a generated ConfigMap's hash can break a reference that each
file alone gets right. A container's settings are read as the kubelet and pydantic-settings
would resolve them: its ``env`` over its ``envFrom`` ConfigMaps over the service's defaults.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.deploy.crd_schemas import SCHEMA_DIR, schema_file

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path for path in (K8S / "overlays").iterdir() if path.is_dir())
#: The Kubernetes release the manifests are validated against (the oldest one supported).
KUBERNETES_VERSION = "1.32"

Resource = dict[str, Any]


def kubectl() -> str | None:
    """kubectl on PATH, else the one ``make kubectl`` puts beside this Python."""
    found = shutil.which("kubectl")
    if found is not None:
        return found
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else None


@cache
def render(directory: Path) -> tuple[Resource, ...]:
    binary = kubectl()
    assert binary is not None
    out = subprocess.run(
        [binary, "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [resource for resource in resources if resource["kind"] == kind]


def named(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    matches = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} rendered"
    return matches[0]


def crd_validator(resource: Resource) -> jsonschema.Draft202012Validator | None:
    path = schema_file(resource["apiVersion"], resource["kind"])
    if not path.is_relative_to(SCHEMA_DIR) or not path.exists():
        return None
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


@dataclass(frozen=True)
class Container:
    """One container of a rendered Deployment, with what it would read at start."""

    deployment: Resource
    spec: Resource
    env: dict[str, str]

    @property
    def pod(self) -> Resource:
        pod: Resource = self.deployment["spec"]["template"]["spec"]
        return pod

    def secret_volume(self, mount_path: str) -> str:
        """The Secret mounted at ``mount_path``."""
        mounts = {m["mountPath"]: m["name"] for m in self.spec.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        secret: str = volumes[mounts[mount_path]]["secret"]["secretName"]
        return secret

    def mounted(self, path: str) -> bool:
        """Whether ``path`` lies on a volume (the root filesystem is read-only)."""
        return any(
            path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
            for m in self.spec.get("volumeMounts", [])
        )


def containers(resources: tuple[Resource, ...]) -> list[Container]:
    found = []
    for deployment in of_kind(resources, "Deployment"):
        for spec in deployment["spec"]["template"]["spec"]["containers"]:
            found.append(Container(deployment, spec, effective_env(resources, spec)))
    return found


def effective_env(resources: tuple[Resource, ...], container: Resource) -> dict[str, str]:
    """Variables as the kubelet sets them: ``envFrom`` first, ``env`` over it; a
    ``configMapKeyRef`` read from the rendered ConfigMap; a Secret's value as ``<secret>``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]
        if "configMapKeyRef" in ref:
            config = named(resources, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[variable["name"]] = config["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[variable["name"]] = "<secret>"
    return env


def expand(argument: str, env: dict[str, str]) -> str:
    """A container argument with ``$(VAR)`` replaced, as the kubelet does."""
    for name, value in env.items():
        argument = argument.replace(f"$({name})", value)
    return argument
