#!/usr/bin/env python3
"""Checks that the manifests under scripts/kubernetes carry what a cluster needs.

Usage: scripts/check-manifests.py [DIR]

Debian's promtool is built without Kubernetes discovery and no cluster runs here, so the
DaemonSet, the PodMonitor and the Prometheus scrape config are parsed as YAML and their
load-bearing fields asserted one by one. Prints one line per failed check and exits 1, or
prints "ok: N checks" and exits 0. Needs only the standard library and PyYAML.
"""

import pathlib
import re
import sys

import yaml

NODE_NAME = "__meta_kubernetes_pod_node_name"
SYSFS_MOUNT = "/host/sys"
METRICS_PORT = 9425


def get(obj, *path):
    """Walks dicts and lists along path; None as soon as a step is missing or the wrong type."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or step >= len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def matches(selector, labels):
    """Whether a non-empty matchLabels selector selects a pod with these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def as_list(value):
    return value if isinstance(value, list) else []


def as_dict(value):
    return value if isinstance(value, dict) else {}


def quantity(value):
    """A Kubernetes resource quantity as a float, or None when it does not parse."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    if not match:
        return None
    return float(match.group(1)) * units.get(match.group(2), 1)


class Checks:
    def __init__(self):
        self.count = 0
        self.failures = []

    def check(self, ok, where, what):
        self.count += 1
        if not ok:
            self.failures.append(f"FAIL {where}: {what}")


def load(directory, checks):
    """Every YAML document under directory, as (file name, document) pairs."""
    docs = []
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml"))
    checks.check(files, str(directory), "no YAML files found")
    for path in files:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as err:
            checks.check(False, path.name, f"does not parse as YAML: {err}".replace("\n", " "))
            continue
        checks.check(loaded, path.name, "holds no YAML document")
        docs.extend((path.name, d) for d in loaded)
    return docs


def effective(pod_ctx, ctr_ctx, key):
    """A container securityContext field, falling back to the pod's as Kubernetes does."""
    value = get(ctr_ctx, key)
    return get(pod_ctx, key) if value is None else value


# The exporter's probe paths: each answers without a scan, so a kubelet probing every few
# seconds costs the node a few system calls, not a scrape of every interface.
PROBE_PATHS = {"livenessProbe": "/-/healthy", "readinessProbe": "/-/ready"}


def probe_ok(probe, port_names, path):
    port = get(probe, "httpGet", "port")
    return get(probe, "httpGet", "path") == path and (
        port in port_names or port == METRICS_PORT
    )


def check_daemonset(checks, where, ds, namespaces):
    spec = as_dict(get(ds, "spec", "template", "spec"))
    labels = as_dict(get(ds, "spec", "template", "metadata", "labels"))
    selector = as_dict(get(ds, "spec", "selector", "matchLabels"))
    namespace = get(ds, "metadata", "namespace")

    checks.check(get(ds, "apiVersion") == "apps/v1", where, "DaemonSet apiVersion is not apps/v1")
    checks.check(namespace in namespaces, where, f"DaemonSet namespace {namespace!r} is not defined")
    checks.check(
        matches(selector, labels),
        where,
        "DaemonSet selector.matchLabels is empty or does not match the pod template labels",
    )
    checks.check(spec.get("hostNetwork") is True, where, "hostNetwork is not true")
    checks.check(
        any(t.get("operator") == "Exists" and not t.get("key") for t in map(as_dict, as_list(spec.get("tolerations")))),
        where,
        "no toleration with operator Exists and no key, so tainted nodes are skipped",
    )

    containers = as_list(spec.get("containers"))
    checks.check(len(containers) == 1, where, "the pod template does not have exactly one container")
    ctr = as_dict(get(containers, 0))
    pod_ctx = as_dict(spec.get("securityContext"))
    ctr_ctx = as_dict(ctr.get("securityContext"))
    checks.check(ctr.get("image"), where, "container has no image")

    sys_volumes = {
        v.get("name")
        for v in map(as_dict, as_list(spec.get("volumes")))
        if get(v, "hostPath", "path") == "/sys"
    }
    checks.check(sys_volumes, where, "no hostPath volume for /sys")
    mount = next(
        (m for m in map(as_dict, as_list(ctr.get("volumeMounts"))) if m.get("name") in sys_volumes),
        {},
    )
    checks.check(
        mount.get("mountPath") == SYSFS_MOUNT,
        where,
        f"the /sys hostPath volume is not mounted at {SYSFS_MOUNT}",
    )
    checks.check(mount.get("readOnly") is True, where, "the /sys mount is not readOnly")
    for arg in map(str, as_list(ctr.get("args")) + as_list(ctr.get("command"))):
        checks.check(
            not arg.startswith("--path.sysfs") or arg == f"--path.sysfs={SYSFS_MOUNT}",
            where,
            f"argument {arg!r} points the exporter away from {SYSFS_MOUNT}",
        )

    checks.check(effective(pod_ctx, ctr_ctx, "runAsNonRoot") is True, where, "runAsNonRoot is not true")
    user = effective(pod_ctx, ctr_ctx, "runAsUser")
    checks.check(isinstance(user, int) and user > 0, where, f"runAsUser {user!r} is not a non-root uid")
    checks.check(ctr_ctx.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem is not true")
    checks.check(ctr_ctx.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation is not false")
    checks.check(ctr_ctx.get("privileged") is not True, where, "container is privileged")
    caps = as_dict(ctr_ctx.get("capabilities"))
    checks.check("ALL" in as_list(caps.get("drop")), where, "capabilities do not drop ALL")
    checks.check(not caps.get("add"), where, f"capabilities add {caps.get('add')!r}")
    checks.check(
        get(effective(pod_ctx, ctr_ctx, "seccompProfile"), "type") == "RuntimeDefault",
        where,
        "seccompProfile type is not RuntimeDefault",
    )

    resources = as_dict(ctr.get("resources"))
    requests = as_dict(resources.get("requests"))
    limits = as_dict(resources.get("limits"))
    for kind, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        value = as_dict(resources.get(kind)).get(key)
        checks.check(quantity(value) is not None, where, f"resources.{kind}.{key} is missing or invalid: {value!r}")
    req, lim = quantity(requests.get("memory")), quantity(limits.get("memory"))
    checks.check(
        req is not None and lim is not None and req <= lim,
        where,
        "memory request is not at most the memory limit",
    )

    ports = [as_dict(p) for p in as_list(ctr.get("ports"))]
    checks.check(
        any(p.get("name") == "metrics" and p.get("containerPort") == METRICS_PORT for p in ports),
        where,
        f"no container port named metrics on {METRICS_PORT}",
    )
    port_names = {p.get("name") for p in ports if p.get("name")}
    for probe, path in PROBE_PATHS.items():
        checks.check(
            probe_ok(ctr.get(probe), port_names, path),
            where,
            f"{probe} is not an httpGet of {path} on the metrics port",
        )
    return labels, namespace, port_names


def relabels_node_name(rules, source_key, target_key):
    """Whether some rule copies the pod's node name into `instance` or `node`."""
    return any(
        NODE_NAME in as_list(r.get(source_key))
        and r.get(target_key) in ("instance", "node")
        and r.get("action", "replace") == "replace"
        for r in map(as_dict, rules)
    )


def check_podmonitor(checks, where, pm, ds_labels, ds_namespace, ds_ports):
    spec = as_dict(pm.get("spec"))
    checks.check(
        pm.get("apiVersion") == "monitoring.coreos.com/v1",
        where,
        "PodMonitor apiVersion is not monitoring.coreos.com/v1",
    )
    selector = as_dict(get(spec, "selector", "matchLabels"))
    checks.check(
        matches(selector, ds_labels),
        where,
        "PodMonitor selector does not match the DaemonSet's pod labels",
    )
    names = as_list(get(spec, "namespaceSelector", "matchNames"))
    in_namespace = ds_namespace in names or (
        not names and get(pm, "metadata", "namespace") == ds_namespace
    )
    checks.check(in_namespace, where, f"PodMonitor does not look in namespace {ds_namespace!r}")
    endpoints = [as_dict(e) for e in as_list(spec.get("podMetricsEndpoints"))]
    checks.check(endpoints, where, "PodMonitor has no podMetricsEndpoints")
    for endpoint in endpoints:
        checks.check(
            endpoint.get("port") in ds_ports,
            where,
            f"podMetricsEndpoints port {endpoint.get('port')!r} is not a DaemonSet port name",
        )
        checks.check(
            endpoint.get("path", "/metrics") == "/metrics",
            where,
            f"podMetricsEndpoints path {endpoint.get('path')!r} is not /metrics",
        )
        checks.check(
            relabels_node_name(as_list(endpoint.get("relabelings")), "sourceLabels", "targetLabel"),
            where,
            f"no relabeling from {NODE_NAME} to instance or node",
        )


def check_scrape_config(checks, where, config, ds_labels, ds_namespace):
    jobs = [as_dict(j) for j in as_list(config.get("scrape_configs"))]
    checks.check(jobs, where, "no scrape_configs")
    for job in jobs:
        name = job.get("job_name")
        sds = [as_dict(s) for s in as_list(job.get("kubernetes_sd_configs"))]
        checks.check(
            any(s.get("role") == "pod" for s in sds),
            where,
            f"job {name!r} has no kubernetes_sd_configs with role pod",
        )
        for sd in sds:
            names = as_list(get(sd, "namespaces", "names"))
            checks.check(
                not names or ds_namespace in names,
                where,
                f"job {name!r} does not discover namespace {ds_namespace!r}",
            )
        rules = [as_dict(r) for r in as_list(job.get("relabel_configs"))]

        def keeps_our_pods(rule):
            if rule.get("action") != "keep":
                return False
            for key, value in ds_labels.items():
                meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
                if as_list(rule.get("source_labels")) == [meta]:
                    return re.fullmatch(str(rule.get("regex", "(.*)")), str(value)) is not None
            return False

        checks.check(
            any(keeps_our_pods(r) for r in rules),
            where,
            f"job {name!r} has no keep rule on a DaemonSet pod label",
        )
        checks.check(
            relabels_node_name(rules, "source_labels", "target_label"),
            where,
            f"job {name!r} has no relabel from {NODE_NAME} to instance or node",
        )


def main(argv):
    if len(argv) > 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    repo = pathlib.Path(__file__).resolve().parent.parent
    directory = pathlib.Path(argv[1]) if len(argv) == 2 else repo / "scripts" / "kubernetes"
    checks = Checks()
    docs = load(directory, checks)

    def of_kind(kind):
        return [(w, d) for w, d in docs if isinstance(d, dict) and d.get("kind") == kind]

    namespaces = {get(d, "metadata", "name") for _, d in of_kind("Namespace")}
    daemonsets = of_kind("DaemonSet")
    podmonitors = of_kind("PodMonitor")
    scrape_configs = [(w, d) for w, d in docs if isinstance(d, dict) and "scrape_configs" in d]
    checks.check(len(daemonsets) == 1, str(directory), f"expected one DaemonSet, found {len(daemonsets)}")
    checks.check(podmonitors, str(directory), "no PodMonitor found")
    checks.check(scrape_configs, str(directory), "no Prometheus config with scrape_configs found")

    if daemonsets:
        where, ds = daemonsets[0]
        labels, namespace, ports = check_daemonset(checks, where, ds, namespaces)
        for where, pm in podmonitors:
            check_podmonitor(checks, where, pm, labels, namespace, ports)
        for where, config in scrape_configs:
            check_scrape_config(checks, where, config, labels, namespace)

    for line in checks.failures:
        print(line)
    if checks.failures:
        return 1
    print(f"ok: {checks.count} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
