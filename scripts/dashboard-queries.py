#!/usr/bin/env python3
"""Print every PromQL expression of a Grafana dashboard, one per line, ready to run.

Usage: dashboard-queries.py [--set NAME=VALUE]... [DASHBOARD_JSON]

DASHBOARD_JSON defaults to grafana/dashboard.json next to this script. The expressions are
taken from every panel's targets (including panels nested in collapsed rows) and from the
Prometheus query variables of the templating section: label_values(SELECTOR, LABEL) becomes
SELECTOR, query_result(EXPR) becomes EXPR, and label_values(LABEL), label_names() and
metrics() are skipped because they are not PromQL.

Dashboard variables are replaced so that the result is plain PromQL: $host and $interface
by `.+` (they are only used as regex matchers), $__rate_interval, $__interval and $__range by
`1m`. All spellings are recognised: $name, ${name}, ${name:format} and [[name]]. `--set`
adds or overrides a value, e.g. `--set __rate_interval=10s`. An unknown variable is an error
(exit status 1), as is a dashboard without any expression. Multi-line expressions are joined
into one line and PromQL comments are removed.

Only the Python standard library is used.
"""

import json
import os
import re
import sys

DEFAULTS = {
    "host": ".+",
    "interface": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
    "__interval_ms": "60000",
    "__range_s": "60",
    "__range_ms": "60000",
}

VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


class Error(Exception):
    pass


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise Error(f"unknown dashboard variable ${name} in: {expr}")
        return values[name]

    return VAR_RE.sub(repl, expr)


def pieces(text, comments=True):
    """Walk PromQL text, yielding (piece, kind). A piece is one character, or a backslash and
    the character it escapes inside a "..." or '...' string (a `...` string is raw). The kind
    is "string" (a literal, its quotes included), "comment" (from # to the end of the line,
    when `comments`) or "code"."""
    kind, quote, i = "code", None, 0
    while i < len(text):
        c = text[i]
        closing = False
        if kind == "string":
            if c == "\\" and quote != "`" and i + 1 < len(text):
                c = text[i : i + 2]
            elif c == quote:
                closing = True
        elif kind == "comment":
            if c == "\n":
                kind = "code"
        elif c in "\"'`":
            kind, quote = "string", c
        elif c == "#" and comments:
            kind = "comment"
        yield c, kind
        if closing:
            kind = "code"
        i += len(c)


def one_line(expr):
    """Remove PromQL comments and join the lines; string literals are kept as they are."""
    out = []
    for c, kind in pieces(expr):
        if kind == "comment":
            continue
        if kind == "code" and c.isspace():
            if out and out[-1] != " ":
                out.append(" ")
        else:
            out.append(c)
    return "".join(out).strip()


def split_top_level(args):
    """Split a function's argument string on commas outside (), {}, [] and quotes."""
    parts, depth, cur = [], 0, []
    for c, kind in pieces(args, comments=False):
        if kind == "code" and c in "({[":
            depth += 1
        elif kind == "code" and c in ")}]":
            depth -= 1
        elif kind == "code" and c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur).strip())
    return parts


def variable_expr(query):
    """The PromQL of a Prometheus variable query, or None if it is not PromQL."""
    q = query.strip()
    m = re.fullmatch(r"(\w+)\s*\((.*)\)", q, re.S)
    if not m:
        return q or None  # a plain expression
    func, args = m.group(1), m.group(2)
    if func == "label_values":
        parts = split_top_level(args)
        return parts[0] if len(parts) == 2 else None
    if func == "query_result":
        return args.strip()
    if func in ("label_names", "metrics"):
        return None
    return q  # an ordinary PromQL function call


def is_prometheus(ds, default=True):
    if isinstance(ds, dict) and ds.get("type"):
        return ds["type"] == "prometheus"
    return default


def panel_exprs(panels):
    for panel in panels:
        panel_prom = is_prometheus(panel.get("datasource"))
        for target in panel.get("targets") or []:
            if is_prometheus(target.get("datasource"), panel_prom) and target.get("expr"):
                yield target["expr"]
        yield from panel_exprs(panel.get("panels") or [])


def dashboard_exprs(dashboard):
    # A dashboard exported "for sharing externally" or saved through the API may be wrapped.
    if "dashboard" in dashboard and "panels" not in dashboard:
        dashboard = dashboard["dashboard"]
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query" or not is_prometheus(var.get("datasource")):
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        expr = variable_expr(query) if isinstance(query, str) else None
        if expr:
            yield expr
    yield from panel_exprs(dashboard.get("panels") or [])


def main(argv):
    values = dict(DEFAULTS)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana", "dashboard.json")
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if arg == "--set" or arg.startswith("--set="):
            spec = arg[len("--set="):] if arg.startswith("--set=") else (args.pop(0) if args else "")
            name, eq, value = spec.partition("=")
            if not eq or not name:
                print("dashboard-queries.py: --set needs NAME=VALUE", file=sys.stderr)
                return 2
            values[name.lstrip("$")] = value
        elif arg.startswith("-") and arg != "-":
            print(f"dashboard-queries.py: unknown option {arg}", file=sys.stderr)
            return 2
        else:
            path = arg
    try:
        if path == "-":
            dashboard = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                dashboard = json.load(f)
        exprs = [substitute(one_line(e), values) for e in dashboard_exprs(dashboard)]
        if not exprs:
            raise Error(f"no PromQL expression found in {path}")
    except (OSError, ValueError, Error) as e:
        print(f"dashboard-queries.py: {e}", file=sys.stderr)
        return 1
    for expr in exprs:
        print(expr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
