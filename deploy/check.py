#!/usr/bin/env python3
"""Validates deploy/ (run by .ci/run): Kubernetes manifests against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields fail), the kustomization's resource list, the
compose file's structure, the Prometheus config and alert rules, and the Grafana dashboard;
every leadrouter_* metric that a rule or panel queries must be one the service exports.

Needs: pip install kubernetes-validate pyyaml
"""
import json
import pathlib
import re
import sys

import kubernetes_validate
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S_VERSION = "1.30.0"
problems = []


def fail(where, what):
    problems.append(f"{where}: {what}")


def exported_metrics():
    """Metric names the Rust sources write (observe/metrics.rs constants, collect.rs gauges)."""
    names = set()
    for f in (ROOT / "src" / "observe").glob("*.rs"):
        names.update(re.findall(r'"(leadrouter_[a-z_]+)"', f.read_text()))
    return names


EXPORTED = exported_metrics()


def check_queries(where, text):
    for name in set(re.findall(r"\bleadrouter_[a-z_]+", text)):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in EXPORTED and base not in EXPORTED:
            fail(where, f"queries {name}, which the service does not export")


def check_k8s():
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    listed = kust.get("resources", [])
    files = sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(listed) != files:
        fail("k8s/kustomization.yaml", f"resources {sorted(listed)} != files {files}")
    kinds = set()
    for name in files:
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()):
            if doc is None:
                continue
            kinds.add(doc.get("kind"))
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"k8s/{name}", f"{doc.get('kind')}: {e.message} at {list(e.path)}")
            except Exception as e:  # unknown kind/version
                fail(f"k8s/{name}", repr(e))
    need = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "Secret", "NetworkPolicy"}
    if not need <= kinds:
        fail("k8s", f"missing kinds {sorted(need - kinds)}")
    dep = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        if "grpc" not in c.get(probe, {}):
            fail("k8s/deployment.yaml", f"{probe} is not a native gRPC probe")
    if not c.get("resources", {}).get("requests"):
        fail("k8s/deployment.yaml", "no resource requests")


def check_compose():
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc.get("services", {})
    replicas = [n for n in services if n.startswith("leadrouter")]
    if len(replicas) != 2:
        fail("docker-compose.yml", f"want two leadrouter replicas, have {replicas}")
    for n in replicas:
        s = services[n]
        if "healthcheck" not in " ".join(s.get("healthcheck", {}).get("test", [])):
            fail("docker-compose.yml", f"{n} does not use `leadrouter healthcheck`")
        if "redis://redis" not in str(s.get("environment", {})):
            fail("docker-compose.yml", f"{n} does not use the shared Redis")
    redis = " ".join(services.get("redis", {}).get("command", []))
    if "--appendonly yes" not in redis or "--appendfsync always" not in redis:
        fail("docker-compose.yml", "redis must run with AOF and appendfsync always")
    if "prometheus" not in services:
        fail("docker-compose.yml", "no prometheus service")
    for n, s in services.items():
        for key in s:
            if key not in {"build", "image", "command", "environment", "depends_on", "healthcheck",
                           "restart", "stop_grace_period", "ports", "volumes"}:
                fail("docker-compose.yml", f"{n}: unexpected key {key}")
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for sc in prom["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]]
    for n in replicas:
        if f"{n}:9464" not in targets:
            fail("prometheus/prometheus.yml", f"does not scrape {n}")


def check_rules():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = []
    for g in doc["groups"]:
        for r in g["rules"]:
            alerts.append(r.get("alert"))
            for key in ("alert", "expr", "for", "labels", "annotations"):
                if key not in r:
                    fail("prometheus/alerts.yml", f"{r.get('alert')}: no {key}")
            if "severity" not in r.get("labels", {}) or "summary" not in r.get("annotations", {}):
                fail("prometheus/alerts.yml", f"{r.get('alert')}: needs labels.severity and annotations.summary")
            check_queries(f"prometheus/alerts.yml {r.get('alert')}", r.get("expr", ""))
    for want in ("RoutingUnavailable", "QueueAge", "SlaBreaches", "ModelDrift", "ErrorRate"):
        if not any(want in (a or "") for a in alerts):
            fail("prometheus/alerts.yml", f"no {want} alert")


def check_dashboard():
    dash = json.loads((DEPLOY / "grafana" / "leadrouter-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        fail("grafana", "panel ids repeat")
    for p in dash["panels"]:
        for t in p.get("targets", []):
            check_queries(f"grafana panel {p['title']!r}", t["expr"])


def check_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    for want, why in (("deploy/build.sh", "the build CI runs"), ("USER 10001", "a non-root user"),
                      ("HEALTHCHECK", "the healthcheck subcommand"), ("AS build", "a multi-stage build")):
        if want not in text:
            fail("Dockerfile", f"lacks {why} ({want})")
    if "deploy/build.sh" not in (ROOT / ".ci" / "run").read_text():
        fail(".ci/run", "does not run deploy/build.sh, the Dockerfile's build")


for check in (check_k8s, check_compose, check_rules, check_dashboard, check_dockerfile):
    check()
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deploy/: ok ({len(EXPORTED)} exported metrics known)")
