"""``deploy/k8s/base/prometheus-rule.yaml``, the Prometheus operator's ``PrometheusRule``, made
from ``deploy/alerts.yml``: one source of alerts for docker compose and Kubernetes alike.

Kustomize cannot make it: a ``configMapGenerator`` makes ConfigMaps only, a replacement copies
a string where the rule needs ``spec.groups`` as structure, and a kustomization may not read
``deploy/alerts.yml`` from outside its folder. So this writes the file (``make k8s-rules``)
and ``tests/deploy/test_manifests.py`` fails while the committed file differs from what it
would write: an edited alerts.yml cannot reach a cluster without the rule following it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "alerts.yml"
RULE = ROOT / "deploy" / "k8s" / "base" / "prometheus-rule.yaml"

HEADER = """\
# Generated from deploy/alerts.yml by `make k8s-rules` (tests/deploy/prometheus_rule.py):
# edit alerts.yml, then regenerate; a test fails while this file is out of date.
"""


def alert_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return groups


def rule_text() -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "llm-stream"},
        "spec": {"groups": alert_groups()},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    RULE.write_text(rule_text())
    print(RULE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
