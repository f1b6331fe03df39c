"""The CRD schemas the manifests are validated against: read from the operators' own CRDs,
committed under ``deploy/k8s/schemas/`` with the release they come from.

No cluster runs in CI, so a KEDA ``ScaledObject`` or a Strimzi ``KafkaUser`` with a misspelt
field would pass ``kubectl kustomize`` and fail only at ``kubectl apply``. The operators'
CustomResourceDefinitions carry an OpenAPI v3 schema per version; this module turns one into
JSON Schema (``nullable`` as a null type, unknown fields refused as ``kubectl apply
--validate=strict`` refuses them) and keeps only the kinds the manifests use, without their
descriptions, so the repository holds kilobytes, not the operators' megabytes.

Refresh (from a checkout of each project at its release tag)::

    python -m tests.deploy.crd_schemas SOURCE_LABEL CRD.yaml... > /dev/null
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "schemas"

#: Keys of an OpenAPI schema that say nothing about validity, dropped to keep files small.
_DROPPED = {"description", "example", "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}


def json_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as JSON Schema: nullable fields may be null, and an
    object with listed properties refuses others unless the CRD preserves unknown fields."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if key not in _DROPPED}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    out.pop("x-kubernetes-int-or-string", None)
    out.pop("x-kubernetes-validations", None)  # CEL: checked by the API server only
    out.pop("x-kubernetes-embedded-resource", None)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def schema_file(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    return SCHEMA_DIR / f"{kind.lower()}_{group}_{version}.json"


def extract(crd: dict[str, Any], source: str) -> dict[Path, dict[str, Any]]:
    """Every served version of ``crd`` as ``{file: schema}``; the root names its source."""
    spec = crd["spec"]
    found: dict[Path, dict[str, Any]] = {}
    for version in spec["versions"]:
        if not version.get("served", False):
            continue
        schema = json_schema(version["schema"]["openAPIV3Schema"])
        root = schema.setdefault("properties", {})
        root["metadata"] = {"type": "object"}  # checked by Kubernetes' own ObjectMeta rules
        schema["$comment"] = f"{spec['names']['kind']} {version['name']} from {source}"
        found[schema_file(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return found


def main(argv: list[str]) -> int:
    source, *paths = argv
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                for target, schema in extract(document, source).items():
                    target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                    print(target.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
