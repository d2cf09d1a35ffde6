//! The shipped Prometheus files, and the whole path through a real Prometheus (Debian's 2.42):
//! the exporter scraped every second with the example alert rules loaded, checked through the
//! HTTP API on the host's own interfaces and in a namespace where a veth peer goes down, and
//! every PromQL expression of the Grafana dashboard run against what was stored.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// The system Python, not whatever a version manager puts first on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// Prometheus replays a WAL and opens its TSDB before it is ready; on a busy CI runner that
/// takes seconds.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long the stored data may take to show a condition. With a 1 s scrape and evaluation
/// interval, everything here happens within a few seconds when it works at all.
const DATA_DEADLINE: Duration = Duration::from_secs(60);
/// Time between two looks at the API: each look starts a Python (and a curl in a namespace).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Picking a free port and releasing it leaves a window for another process to take it; the
/// whole start is retried this many times.
const START_ATTEMPTS: usize = 5;

/// `path` as a program, or an error naming the package that provides it.
fn tool(path: &'static str, package: &str) -> Result<&'static str> {
    if Path::new(path).exists() {
        Ok(path)
    } else {
        Err(
            format!("{path} is missing: scripts/test.sh installs the Debian package {package}")
                .into(),
        )
    }
}

fn prometheus_dir() -> PathBuf {
    repo().join("scripts/prometheus")
}

/// The alert and recording rule names in `alerts.yml`, in file order.
fn rule_names() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(prometheus_dir().join("alerts.yml"))?;
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start().strip_prefix("- ")?;
            let name = l
                .strip_prefix("alert:")
                .or_else(|| l.strip_prefix("record:"))?;
            Some(name.trim().to_owned())
        })
        .collect();
    if names.is_empty() {
        return Err("alerts.yml has no rules".into());
    }
    Ok(names)
}

fn promtool(args: &[&str]) -> Result<String> {
    run(Command::new(tool(PROMTOOL, "prometheus")?)
        .args(args)
        .current_dir(prometheus_dir()))
}

#[test]
fn promtool_checks_the_rules() -> Result {
    let out = promtool(&["check", "rules", "alerts.yml"])?;
    let expected = format!("SUCCESS: {} rules found", rule_names()?.len());
    assert!(out.contains(&expected), "{out}");
    Ok(())
}

#[test]
fn promtool_runs_the_rule_unit_tests() -> Result {
    let out = promtool(&["test", "rules", "alerts_test.yml"])?;
    assert!(out.contains("SUCCESS"), "{out}");
    Ok(())
}

#[test]
fn promtool_checks_the_example_config() -> Result {
    let out = promtool(&["check", "config", "prometheus.yml"])?;
    assert!(
        out.contains("prometheus.yml is valid prometheus config file syntax"),
        "{out}"
    );
    Ok(())
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query parameter.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs a Python script with `input` on stdin and returns what it printed.
fn python(script: &str, input: &str) -> Result<String> {
    let out = pipe(
        Command::new(tool(PYTHON, "python3")?).args(["-c", script]),
        input.as_bytes(),
    )?;
    Ok(String::from_utf8(out.stdout)?)
}

/// Prints the status of an API answer, then one line per series: the value, then its labels as
/// tab-separated `name=value`. A range vector gives its latest value; a scalar has no labels.
const QUERY_ANSWER: &str = r#"
import json, sys
r = json.load(sys.stdin)
if r.get("status") != "success":
    print("error", r.get("errorType"), r.get("error"))
    sys.exit(0)
print("success")
d = r["data"]
if d["resultType"] in ("scalar", "string"):
    print(d["result"][1])
for s in d["result"] if d["resultType"] in ("vector", "matrix") else []:
    v = s["value"][1] if "value" in s else s["values"][-1][1]
    print("\t".join([v] + [k + "=" + x for k, x in sorted(s["metric"].items())]))
"#;

/// One line per active target: its health, then its last error.
const TARGETS_ANSWER: &str = r#"
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["health"], t["lastError"])
"#;

/// One line per rule: name, health, last error.
const RULES_ANSWER: &str = r#"
import json, sys
for g in json.load(sys.stdin)["data"]["groups"]:
    for r in g["rules"]:
        print(r["name"], r["health"], r.get("lastError", ""))
"#;

/// One line per active alert (pending or firing): name, interface, state, description.
const ALERTS_ANSWER: &str = r#"
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    l = a["labels"]
    print("\t".join([l["alertname"], l.get("interface", ""), a["state"], a["annotations"].get("description", "")]))
"#;

#[derive(Debug)]
struct Series {
    value: String,
    labels: BTreeMap<String, String>,
}

/// The result of an instant query that succeeded.
#[derive(Debug)]
struct Answer {
    json: String,
    series: Vec<Series>,
}

impl Answer {
    fn interfaces(&self) -> Vec<&str> {
        self.series
            .iter()
            .filter_map(|s| s.labels.get("interface").map(String::as_str))
            .collect()
    }
}

/// Calls `f` until it gives a value or the deadline passes; its errors say what is not there
/// yet, and the last one is in the timeout message.
fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let end = Instant::now() + deadline;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => {
                return Err(format!("timed out waiting for {what}; last: {e}").into())
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// A free port on 127.0.0.1, on the host or inside a namespace; free only until someone else
/// takes it, hence the retries in [`Prometheus::start`].
fn free_port(ns: Option<&Netns>) -> Result<u16> {
    match ns {
        None => Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()),
        Some(ns) => {
            let out = run(ns.cmd(tool(PYTHON, "python3")?).args([
                "-c",
                "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])",
            ]))?;
            Ok(out.trim().parse()?)
        }
    }
}

/// A Prometheus scraping one exporter every second, with the example rules; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    /// The namespace it runs in; its API is then reached with curl inside it.
    ns: Option<String>,
    log: PathBuf,
    /// Config, data and log; an `Option` so that a failed start can hand it to the next try.
    dir: Option<TempDir>,
}

impl Prometheus {
    fn start(target: SocketAddr, ns: Option<&Netns>) -> Result<Prometheus> {
        let program = tool(PROMETHEUS, "prometheus")?;
        if ns.is_some() {
            tool("/usr/bin/curl", "curl")?;
        }
        let dir = TempDir::new()?;
        let config = dir.0.join("prometheus.yml");
        let rules = prometheus_dir().join("alerts.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {:?}\n\
                 scrape_configs:\n  - job_name: interfaces\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.to_str().ok_or("repo path is not UTF-8")?
            ),
        )?;
        let mut dir = Some(dir);
        for attempt in 1..=START_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port(ns)?));
            let d = dir.take().ok_or("no temp dir")?;
            let log = d.0.join(format!("prometheus-{attempt}.log"));
            let mut cmd = match ns {
                Some(ns) => ns.cmd(program),
                None => Command::new(program),
            };
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    d.0.join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?);
            let mut p = Prometheus {
                child: cmd.spawn()?,
                addr,
                ns: ns.map(|n| n.name.clone()),
                log,
                dir: Some(d),
            };
            match p.wait_ready() {
                Ok(()) => return Ok(p),
                Err(_) if p.log().contains("address already in use") => {
                    eprintln!("prometheus: port {} was taken, retrying", addr.port());
                    // Keep the directory; dropping `p` kills the process.
                    dir = p.dir.take();
                }
                Err(e) => return Err(e),
            }
        }
        Err(format!("prometheus found no free port in {START_ATTEMPTS} attempts").into())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result {
        let end = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("prometheus exited ({status}):\n{}", self.log()).into());
            }
            if let Ok((200, _)) = self.get("/-/ready") {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!("prometheus was not ready in time:\n{}", self.log()).into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// A GET of `target` (path and query) on the API, as HTTP/1.0 so that the body is framed
    /// by the close and never chunked.
    fn get(&self, target: &str) -> Result<(u16, String)> {
        let raw = match &self.ns {
            None => {
                let mut s = connect(self.addr)?;
                write!(s, "GET {target} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw)?;
                raw
            }
            Some(ns) => {
                Command::new("ip")
                    .args(["netns", "exec", ns, "curl", "-s", "-i", "--http1.0"])
                    .args(["--max-time", "10"])
                    .arg(format!("http://{}{target}", self.addr))
                    .stdin(Stdio::null())
                    .output()?
                    .stdout
            }
        };
        let r = parse_response(&raw, Framing::LengthOrClose)?;
        Ok((r.status, r.text()))
    }

    /// Runs an instant query; an answer with status `error` is an error naming the query.
    fn query(&self, expr: &str) -> Result<Answer> {
        let (_, json) = self.get(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let out = python(QUERY_ANSWER, &json)?;
        let mut lines = out.lines();
        if lines.next() != Some("success") {
            return Err(format!("query {expr} failed: {json}").into());
        }
        let series = lines
            .map(|l| {
                let mut fields = l.split('\t');
                let value = fields.next().unwrap_or_default().to_owned();
                let labels = fields
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Series { value, labels }
            })
            .collect();
        Ok(Answer { json, series })
    }

    /// Waits until the one target has been scraped successfully.
    fn wait_target_up(&self) -> Result {
        poll("the target to be up", DATA_DEADLINE, || {
            let (_, json) = self.get("/api/v1/targets")?;
            let health = python(TARGETS_ANSWER, &json)?;
            if health.lines().count() == 1 && health.starts_with("up ") {
                Ok(())
            } else {
                Err(format!("targets: {health:?}").into())
            }
        })
        .map_err(|e| format!("{e}\nprometheus log:\n{}", self.log()).into())
    }

    /// Waits until `expr` gives exactly one series, with `value`.
    fn wait_value(&self, expr: &str, value: &str) -> Result<Answer> {
        poll(&format!("{expr} = {value}"), DATA_DEADLINE, || {
            let a = self.query(expr)?;
            match a.series.as_slice() {
                [s] if s.value == value => Ok(a),
                _ => Err(format!("{expr}: {}", a.json).into()),
            }
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every family the issue added, besides the seed's `interface_status`.
const FAMILIES: &[&str] = &[
    "interface_oper_state",
    "interface_admin_up",
    "interface_carrier_changes_total",
    "interface_mtu_bytes",
    "interface_info",
    "interfaces_exporter_build_info",
    "interface_receive_bytes_total",
    "interface_promiscuous",
    "interface_transmit_queue_length",
    "interface_receive_crc_errors_total",
    "interface_last_change_timestamp_seconds",
    "interfaces_exporter_start_time_seconds",
];

/// The dashboard's "Down since" query, which has data only where an interface is down.
const DOWN_SINCE: &str = "interface_last_change_timestamp_seconds";

#[test]
fn a_real_prometheus_stores_the_host_and_answers_every_dashboard_query() -> Result {
    let exp = Exporter::start(&["--path.sysfs=/sys", "--collector.statistics"])?;
    let prom = Prometheus::start(exp.addr, None)?;
    prom.wait_target_up()?;

    let names = host_interfaces()?;
    let status = poll(
        "every host interface in interface_status",
        DATA_DEADLINE,
        || {
            let a = prom.query("interface_status")?;
            let mut stored: Vec<&str> = a.interfaces();
            stored.sort_unstable();
            if stored == names {
                Ok(a)
            } else {
                Err(format!("host has {names:?}, stored: {stored:?}").into())
            }
        },
    )?;
    eprintln!(
        "/api/v1/query?query=interface_status answered:\n{}",
        status.json
    );
    let instance = exp.addr.to_string();
    for s in &status.series {
        assert!(["0", "1", "2"].contains(&s.value.as_str()), "{s:?}");
        assert_eq!(s.labels.get("job").map(String::as_str), Some("interfaces"));
        assert_eq!(s.labels.get("instance"), Some(&instance));
    }

    for family in FAMILIES {
        let a = poll(family, DATA_DEADLINE, || {
            let a = prom.query(family)?;
            if a.series.is_empty() {
                Err(format!("{family} is not stored").into())
            } else {
                Ok(a)
            }
        })?;
        if !family.starts_with("interfaces_exporter_") {
            let mut stored = a.interfaces();
            stored.sort_unstable();
            stored.dedup();
            assert_eq!(stored, names, "{family}: {}", a.json);
        }
    }

    let rules = rule_names()?;
    poll("every rule loaded and healthy", DATA_DEADLINE, || {
        let (_, json) = prom.get("/api/v1/rules")?;
        let loaded = python(RULES_ANSWER, &json)?;
        let mut names: Vec<&str> = Vec::new();
        for line in loaded.lines() {
            let mut f = line.splitn(3, ' ');
            let (name, health) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            if health != "ok" {
                return Err(format!("rule {name} has health {health:?}: {line}").into());
            }
            names.push(name);
        }
        if names == rules {
            Ok(())
        } else {
            Err(format!("alerts.yml has {rules:?}, loaded: {names:?}").into())
        }
    })?;

    // Rates over the dashboard's 1m need two samples in the window; wait for a few more.
    poll("five scrapes in the last minute", DATA_DEADLINE, || {
        let a = prom.query("count_over_time(up{job=\"interfaces\"}[1m]) >= 5")?;
        if a.series.is_empty() {
            Err(a.json.into())
        } else {
            Ok(())
        }
    })?;
    let exprs = run(Command::new(tool(PYTHON, "python3")?)
        .arg(repo().join("scripts/dashboard-queries.py"))
        .arg(repo().join("scripts/grafana/dashboard.json")))?;
    let mut failures = Vec::new();
    let mut count = 0;
    let host_has_down = !prom
        .query("interface_oper_state{state=~\"down|lowerlayerdown\"} == 1")?
        .series
        .is_empty();
    for expr in exprs.lines().filter(|l| !l.trim().is_empty()) {
        count += 1;
        match prom.query(expr) {
            // A host with no interface down leaves the column empty; the namespace test with
            // down interfaces checks what it shows.
            Ok(a) if a.series.is_empty() && expr.contains(DOWN_SINCE) && !host_has_down => {}
            Ok(a) if a.series.is_empty() => failures.push(format!("no data: {expr}")),
            Ok(_) => {}
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(count > 0, "dashboard-queries.py printed no expression");
    assert!(
        failures.is_empty(),
        "{} of {count} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The exporter with `source` in `ns` and a Prometheus scraping it, once it has stored ie-a up.
fn scraped_pair(ns: &Netns, source: &str) -> Result<(Exporter, Prometheus)> {
    let exp = ns.exporter(&[source])?;
    let prom = Prometheus::start(exp.addr, Some(ns))?;
    prom.wait_target_up()?;
    prom.wait_value("interface_status{interface=\"ie-a\"}", "1")?;
    Ok((exp, prom))
}

#[test]
fn a_peer_set_down_changes_the_stored_series() -> Result {
    for_each_source(|source| {
        let ns = Netns::with_pair()?;
        let (_exp, prom) = scraped_pair(&ns, source)?;
        prom.wait_value("interface_oper_state{interface=\"ie-b\",state=\"up\"}", "1")?;

        ns.ip("link set ie-b down")?;
        // ie-a's lower layer is its peer: lowerlayerdown, which the seed contract counts as 2.
        prom.wait_value("interface_status{interface=\"ie-a\"}", "2")?;
        prom.wait_value(
            "interface_oper_state{interface=\"ie-a\",state=\"lowerlayerdown\"}",
            "1",
        )?;
        prom.wait_value(
            "interface_oper_state{interface=\"ie-b\",state=\"down\"}",
            "1",
        )?;
        prom.wait_value("interface_admin_up{interface=\"ie-b\"}", "0")?;
        // The history holds both states: the change was stored, not just the latest value.
        prom.wait_value(
            "max_over_time(interface_status{interface=\"ie-b\"}[1m]) - min_over_time(interface_status{interface=\"ie-b\"}[1m])",
            "1",
        )?;
        Ok(())
    })
}

/// The active alerts as (name, interface, state, description).
fn alerts(prom: &Prometheus) -> Result<Vec<[String; 4]>> {
    let (_, json) = prom.get("/api/v1/alerts")?;
    Ok(python(ALERTS_ANSWER, &json)?
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, '\t').map(str::to_owned);
            std::array::from_fn(|_| f.next().unwrap_or_default())
        })
        .collect())
}

/// `secs` (Unix time) as humanizeTimestamp starts it, to the second: `2026-11-29 04:23:05`.
fn utc_second(secs: f64) -> Result<String> {
    let out = run(Command::new("date")
        .arg("-u")
        .arg(format!("-d@{}", secs.floor()))
        .arg("+%Y-%m-%d %H:%M:%S"))?;
    Ok(out.trim().to_owned())
}

#[test]
fn the_interface_down_alert_says_since_when() -> Result {
    for_each_source(|source| {
        // ie-a goes lowerlayerdown while the exporter watches.
        let ns = Netns::with_pair()?;
        // ie-c has been lowerlayerdown since before the exporter started: "at least since".
        ns.ip("link add ie-c type veth peer name ie-d")?;
        ns.ip("link set ie-c up")?;
        let (exp, prom) = scraped_pair(&ns, source)?;
        let start: f64 = prom
            .wait_value("count(interfaces_exporter_start_time_seconds)", "1")
            .and_then(|_| prom.query("interfaces_exporter_start_time_seconds"))?
            .series
            .first()
            .ok_or("no start time")?
            .value
            .parse()?;

        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        ns.ip("link set ie-b down")?;
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        prom.wait_value("interface_status{interface=\"ie-a\"}", "2")?;
        let changed: f64 = prom
            .query("interface_last_change_timestamp_seconds{interface=\"ie-a\"}")?
            .series
            .first()
            .ok_or("no last change for ie-a")?
            .value
            .parse()?;
        // Netlink times the change as it happens, sysfs at the next scan, a scrape (1 s) later.
        assert!(
            changed >= before.as_secs_f64() - 0.25 && changed <= after.as_secs_f64() + 2.0,
            "ie-a changed at {changed}, set down between {before:?} and {after:?}"
        );

        // InterfaceDown waits 2 minutes before it fires, but a pending alert carries its
        // annotations already.
        let instance = exp.addr.to_string();
        let head = |iface: &str| {
            format!("Interface {iface} on {instance} is administratively up but its operational state is down or lowerlayerdown (no carrier, or the lower device is down) since ")
        };
        let found = poll("InterfaceDown for ie-a and ie-c", DATA_DEADLINE, || {
            let active = alerts(&prom)?;
            let down: BTreeMap<&str, &str> = active
                .iter()
                .filter(|a| a[0] == "InterfaceDown")
                .map(|a| (a[1].as_str(), a[3].as_str()))
                .collect();
            if down.keys().copied().eq(["ie-a", "ie-c"]) {
                Ok(down
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>())
            } else {
                Err(format!("alerts: {active:?}").into())
            }
        })?;
        for (iface, description) in &found {
            eprintln!("{source}: InterfaceDown for {iface}: {description}");
        }
        let a = &found["ie-a"];
        let since = utc_second(changed)?;
        assert!(a.starts_with(&format!("{}{since}", head("ie-a"))), "{a}");
        assert!(a.ends_with("s)."), "{a}");
        assert!(
            a.contains(" +0000 UTC (for ") && !a.contains("at least"),
            "{a}"
        );
        let c = &found["ie-c"];
        let start_text = utc_second(start)?;
        assert!(
            c.starts_with(&format!("{}at least {start_text}", head("ie-c"))),
            "{c}"
        );
        assert!(
            c.contains(" +0000 UTC, when the exporter started (for at least ")
                && c.ends_with("s)."),
            "{c}"
        );

        // The dashboard's Down since column: every interface that is down, at its last change, in
        // milliseconds for Grafana's time unit; ie-b and ie-d are down too, set so by hand.
        let exprs = run(Command::new(tool(PYTHON, "python3")?)
            .arg(repo().join("scripts/dashboard-queries.py"))
            .arg(repo().join("scripts/grafana/dashboard.json")))?;
        let expr = exprs
            .lines()
            .find(|l| l.contains(DOWN_SINCE))
            .ok_or("the dashboard has no Down since query")?;
        let column = prom.query(expr)?;
        let mut shown = column.interfaces();
        shown.sort_unstable();
        assert_eq!(shown, ["ie-a", "ie-b", "ie-c", "ie-d"], "{}", column.json);
        for s in &column.series {
            let ms: f64 = s.value.parse()?;
            assert!(ms >= start * 1000.0 - 1.0, "{s:?}");
        }
        Ok(())
    })
}
