"""The alarms and the dashboard of template.yaml watch metrics the functions
really publish. Reads the CloudWatch Embedded Metric Format lines the real
function binaries printed (the `cargo lambda watch` log of
scripts/lambda-local) and requires every metric of the `Sluice` namespace
that an alarm or a dashboard widget names to be among them, with the same
dimension set and values: CloudWatch treats another dimension set as another
metric, and an alarm on a metric nobody publishes never fires.

Usage: python tests/alarm_metrics.py template.yaml watch.log
Prints one `ok:` line per metric checked, `FAILED:` lines otherwise.
"""

import json
import re
import sys

from template_yaml import load

NAMESPACE = "Sluice"


def emitted(log_path):
    """(metric name, frozenset of (dimension, value)) for every metric of
    every dimension set of every EMF line in the log."""
    out = set()
    for line in open(log_path, errors="replace"):
        start = line.find('{"_aws"')
        if start < 0:
            start = line.find("{")
        if start < 0 or "CloudWatchMetrics" not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
            if directive.get("Namespace") != NAMESPACE:
                continue
            for names in directive["Dimensions"]:
                dims = frozenset((n, doc[n]) for n in names)
                for m in directive["Metrics"]:
                    out.add((m["Name"], dims))
    return out


def watched(template_path):
    """(where, metric name, {dimension: value or None}) for every metric of
    the Sluice namespace the template's alarms and dashboard name; None
    stands for any value (a SEARCH over a dimension)."""
    t = load(template_path)
    out = []
    for name, r in t["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::CloudWatch::Alarm":
            if props.get("Namespace") == NAMESPACE:
                dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
                out.append((f"alarm {name}", props["MetricName"], dims))
            for m in props.get("Metrics", []):
                metric = m.get("MetricStat", {}).get("Metric", {})
                if metric.get("Namespace") == NAMESPACE:
                    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    out.append((f"alarm {name}", metric["MetricName"], dims))
        elif r["Type"] == "AWS::CloudWatch::Dashboard":
            body = props["DashboardBody"]
            text = body["Fn::Sub"] if isinstance(body, dict) else body
            doc = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
            for w in doc["widgets"]:
                for row in w.get("properties", {}).get("metrics", []):
                    first = row[0]
                    if first == NAMESPACE:
                        plain = [x for x in row[2:] if isinstance(x, str)]
                        dims = dict(zip(plain[::2], plain[1::2]))
                        out.append((f"dashboard {name}", row[1], dims))
                    elif isinstance(first, dict) and "expression" in first:
                        m = re.search(r"SEARCH\('\{(\w+),([\w,]+)\}\s+(.*?)'", first["expression"])
                        if not m or m.group(1) != NAMESPACE:
                            continue
                        dims = {d: None for d in m.group(2).split(",")}
                        terms = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3)))
                        metric = terms.pop("MetricName")
                        dims.update(terms)
                        out.append((f"dashboard {name} (SEARCH)", metric, dims))
    return out


def main(template_path, log_path):
    published = emitted(log_path)
    wanted = watched(template_path)
    failed = 0
    if not published:
        print(f"FAILED: no EMF metric of the {NAMESPACE} namespace in {log_path}")
        return 1
    if not any(w.startswith("alarm") for w, _, _ in wanted):
        print(f"FAILED: no alarm of {template_path} watches a {NAMESPACE} metric")
        return 1
    for where, metric, dims in wanted:
        found = any(
            name == metric
            and {k for k, _ in got} == set(dims)
            and all(v is None or (k, v) in got for k, v in dims.items())
            for name, got in published
        )
        shown = ", ".join(f"{k}={'*' if v is None else v}" for k, v in sorted(dims.items()))
        if found:
            print(f"ok: {where} watches {metric} ({shown}), which the functions publish")
        else:
            failed += 1
            near = sorted({tuple(sorted(k for k, _ in got)) for name, got in published if name == metric})
            print(f"FAILED: {where} watches {metric} ({shown}); the functions publish it with dimensions {near or 'never'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
