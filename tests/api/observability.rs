//! The ops files: the alert and recording rules of `deploy/prometheus/`,
//! the Grafana dashboard of `deploy/grafana/`, and the PrometheusRule
//! generated from the rules. First what can be read without tools (every
//! alert documented and unit-tested, every query naming only known metrics);
//! then promtool on the dashboard's queries, and a real Prometheus scraping
//! a real bridge driven through refusals and a NATS stop.
//!
//! The tool tests find promtool and prometheus through `PROMTOOL_BIN` and
//! `PROMETHEUS_BIN`, which `scripts/test` sets once it has installed them;
//! without them they print why they skip, except under `CI=true`, where they
//! fail.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use fastpix_nats_bridge::consumer::{Delivery, Outcome as ConsumerOutcome, SubjectPrefix, Worker};

use crate::deploy::*;
use crate::helpers::*;
use crate::inspector::TestInspector;

/// Every metric the live-scrape test requires Prometheus to hold after
/// scraping a real bridge, with the labels each of its series must carry.
/// The rules and the dashboard may name only these and their own recorded
/// series.
pub const LIVE_METRICS: &[(&str, &[&str])] = &[
    ("up", &[]),
    ("fastpix_bridge_requests_total", &["outcome"]),
    ("fastpix_bridge_events_published_total", &["family"]),
    ("fastpix_bridge_request_duration_seconds_bucket", &["le"]),
    ("fastpix_bridge_request_duration_seconds_count", &[]),
    ("fastpix_bridge_request_duration_seconds_sum", &[]),
    ("fastpix_bridge_publish_duration_seconds_bucket", &["le"]),
    ("fastpix_bridge_publish_duration_seconds_count", &[]),
    ("fastpix_bridge_publish_duration_seconds_sum", &[]),
    ("fastpix_bridge_publishes_in_flight", &[]),
    ("fastpix_bridge_nats_connected", &[]),
    ("fastpix_bridge_ready", &[]),
    ("fastpix_bridge_build_info", &["version"]),
    ("fastpix_bridge_stream_bytes", &["stream"]),
    ("fastpix_bridge_stream_max_bytes", &["stream"]),
    // Exported by the inspector on its admin port (`inspect.admin_listen`),
    // the live test's second scrape job.
    ("fastpix_consumer_pending", &["stream", "consumer"]),
    ("fastpix_consumer_ack_pending", &["stream", "consumer"]),
    ("fastpix_consumer_redelivered", &["stream", "consumer"]),
    ("fastpix_dead_letters", &["consumer"]),
    ("fastpix_inspector_ready", &[]),
];

const RULES: &str = "deploy/prometheus/rules/fastpix-bridge.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/tests/fastpix-bridge.test.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/fastpix-bridge.json";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/monitoring/prometheusrule.yaml";
/// The job name the compose profile, the ServiceMonitor (the Service's
/// name) and the FastPixBridgeDown alert give the bridge's scrape.
const BRIDGE_JOB: &str = "fastpix-nats-bridge";
/// The compose profile's job name for the inspector's admin port.
const INSPECTOR_JOB: &str = "inspector";

fn rules_file() -> Value {
    yaml_file(RULES)
}

/// Every rule of every group.
fn rules() -> Vec<Value> {
    rules_file()["groups"]
        .as_array()
        .expect("the rules file has groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn alerts() -> Vec<Value> {
    rules()
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect()
}

fn recorded_names() -> BTreeSet<String> {
    rules()
        .iter()
        .filter_map(|r| r["record"].as_str().map(str::to_owned))
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read_repo_file(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter().cloned());
        }
    }
    out
}

/// Every PromQL text of the dashboard, as written, with where it is: each
/// panel target, and the selector inside each `label_values(…)` variable.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash = dashboard();
    let mut out = Vec::new();
    for p in panels(&dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {:?} has a target without expr", p["title"]));
            out.push((format!("panel {:?}", p["title"]), expr.to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if v["type"] != "query" {
            continue;
        }
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a query variable has a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _label)| selector.trim().to_owned())
            .unwrap_or_else(|| panic!("variable {:?}: expected label_values(…)", v["name"]));
        out.push((format!("variable {:?}", v["name"]), inner));
    }
    out
}

/// A Grafana query made plain PromQL: the variables the dashboard uses
/// replaced by what they stand for (any job or instance, a rate window).
fn as_promql(query: &str) -> String {
    let mut q = query.to_owned();
    for (var, value) in [
        ("$__rate_interval", "5m"),
        ("${job}", ".+"),
        ("${instance}", ".+"),
        ("$job", ".+"),
        ("$instance", ".+"),
    ] {
        q = q.replace(var, value);
    }
    assert!(
        !q.contains('$'),
        "{query}: a Grafana variable this test does not know"
    );
    q
}

/// One series selector of a query: the metric name and its matchers.
#[derive(Debug, Clone)]
struct Selector {
    name: String,
    matchers: Vec<(String, MatchOp, String)>,
}

struct Selectors(Vec<Selector>);

impl ExprVisitor for Selectors {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let matchers: Vec<_> = vs
            .matchers
            .matchers
            .iter()
            .map(|m| (m.name.clone(), m.op.clone(), m.value.clone()))
            .collect();
        let name = vs.name.clone().or_else(|| {
            matchers
                .iter()
                .find(|(l, op, _)| l == "__name__" && matches!(op, MatchOp::Equal))
                .map(|(_, _, v)| v.clone())
        });
        let name = name.ok_or_else(|| format!("a selector without a metric name: {vs}"))?;
        self.0.push(Selector { name, matchers });
        Ok(true)
    }
}

/// The selectors of `promql`, failing the test when it does not parse.
fn selectors(promql: &str, what: &str) -> Vec<Selector> {
    let expr =
        parser::parse(promql).unwrap_or_else(|e| panic!("{what} does not parse: {e}\n{promql}"));
    let mut visitor = Selectors(Vec::new());
    walk_expr(&mut visitor, &expr).unwrap_or_else(|e| panic!("{what}: {e}"));
    visitor.0
}

/// Every PromQL expression of the rules and the dashboard, with where it is.
fn every_expression() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules()
        .iter()
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            let expr = r["expr"].as_str().expect("every rule has an expr");
            (format!("rule {name}"), expr.to_owned())
        })
        .collect();
    out.extend(
        dashboard_queries()
            .into_iter()
            .map(|(w, q)| (w, as_promql(&q))),
    );
    out
}

#[test]
fn every_alert_has_a_severity_a_for_a_summary_and_a_description() {
    let alerts = alerts();
    assert!(alerts.len() >= 9, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        assert!(names.insert(name), "alert {name} defined twice");
        assert!(
            matches!(
                a["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity must be critical or warning"
        );
        let r#for = a["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no `for:`"));
        assert!(
            humantime::parse_duration(r#for).is_ok(),
            "{name}: for: {for}"
        );
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| s.contains("{{ $labels.")),
            "{name}: the summary must say which instance or consumer"
        );
        let description = a["annotations"]["description"].as_str().unwrap_or("");
        assert!(
            description.len() > 120,
            "{name}: the description must say what happened and what to do: {description:?}"
        );
    }
}

#[test]
fn every_alert_has_a_promtool_test_where_it_fires_and_one_where_it_stays_quiet() {
    let tests = yaml_file(RULE_TESTS);
    assert_eq!(
        tests["rule_files"],
        serde_json::json!(["../rules/fastpix-bridge.rules.yml"]),
        "{RULE_TESTS} must test the rules file"
    );
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for group in tests["tests"].as_array().expect("tests") {
        for t in group["alert_rule_test"].as_array().into_iter().flatten() {
            let name = t["alertname"].as_str().expect("alertname").to_owned();
            let expected = t["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let alerts: BTreeSet<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect();
    for name in &alerts {
        assert!(fires.contains(name), "no test shows {name} firing");
        assert!(quiet.contains(name), "no test shows {name} staying quiet");
    }
    for name in fires.union(&quiet) {
        assert!(
            alerts.contains(name),
            "{RULE_TESTS} tests unknown alert {name}"
        );
    }
}

#[test]
fn the_prometheusrule_is_the_rules_file_as_generated() {
    let output = Command::new("bash")
        .arg(repo_path("scripts/gen-prometheusrule"))
        .output()
        .expect("run scripts/gen-prometheusrule");
    assert!(output.status.success(), "{output:?}");
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        generated == read_repo_file(PROMETHEUS_RULE),
        "{PROMETHEUS_RULE} is stale: run \
         `scripts/gen-prometheusrule > {PROMETHEUS_RULE}`"
    );
    let object = yaml_file(PROMETHEUS_RULE);
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(object["spec"]["groups"], rules_file()["groups"]);
    let kustomization = yaml_file("deploy/kubernetes/monitoring/kustomization.yaml");
    assert!(
        kustomization["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "prometheusrule.yaml")),
        "the monitoring kustomization applies the PrometheusRule"
    );
}

#[test]
fn the_rules_and_the_dashboard_name_only_metrics_that_are_exported_or_recorded() {
    let live: BTreeMap<&str, &[&str]> = LIVE_METRICS.iter().copied().collect();
    let recorded = recorded_names();
    let mut named = BTreeSet::new();
    for (what, expr) in every_expression() {
        for s in selectors(&expr, &what) {
            if s.name.contains(':') {
                assert!(
                    recorded.contains(&s.name),
                    "{what} reads {}, which no rule records",
                    s.name
                );
            } else {
                assert!(
                    live.contains_key(s.name.as_str()),
                    "{what} reads {}, which neither the bridge nor the inspector exports",
                    s.name
                );
            }
            named.insert(s.name);
        }
    }
    // The dashboard draws each state the bridge exports.
    for metric in [
        "fastpix_bridge_publishes_in_flight",
        "fastpix_bridge_nats_connected",
        "fastpix_bridge_ready",
        "fastpix_consumer_pending",
        "fastpix_bridge_stream_bytes",
        "fastpix_bridge_stream_max_bytes",
    ] {
        assert!(named.contains(metric), "nothing reads {metric}");
    }
}

#[test]
fn the_dashboard_has_job_and_instance_variables_and_a_panel_for_each_concern() {
    let dash = dashboard();
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["job", "instance"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "${name}");
        assert_eq!(v["includeAll"], true, "${name} offers All");
        assert_eq!(v["multi"], true, "${name} takes several values");
    }

    let panels = panels(&dash);
    let mut ids = BTreeSet::new();
    for p in &panels {
        assert!(ids.insert(p["id"].as_u64()), "panel ids are unique");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().unwrap_or_default();
            // The bridge's panels follow the variables; the consumer panels
            // read the inspector, a job of its own.
            if expr.contains("fastpix_bridge") {
                assert!(
                    expr.contains("job=~\"$job\"") && expr.contains("instance=~\"$instance\""),
                    "{}: {expr} ignores $job or $instance",
                    p["title"]
                );
            }
        }
    }
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    for wanted in [
        "by outcome",
        "by family",
        "by webhook",
        "request latency",
        "publish-to-ack latency",
        "in flight",
        "nats connected",
        "ready",
        "consumer pending",
        "stream fill",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel for {wanted}: {titles:?}"
        );
    }
    // Works with or without a `webhook` label on the counters.
    assert!(
        dashboard_queries()
            .iter()
            .any(|(_, q)| q.contains("sum by (webhook)")),
        "the by-webhook panel sums by webhook"
    );
}

// ---------------------------------------------------------------------------
// With the tools

#[test]
fn every_dashboard_query_parses_with_promtool() {
    let Some(promtool) = external_tool("PROMTOOL_BIN") else {
        return;
    };
    // promtool parses expressions as rules: one recording rule per query.
    let queries = dashboard_queries();
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, q))| serde_json::json!({ "record": format!("dashboard_query_{i}"), "expr": as_promql(q) }))
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yml");
    // JSON is YAML.
    std::fs::write(&path, file.to_string()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{text}"
    );
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{text}"
    );

    // And it can fail: a query Grafana would show as an error.
    std::fs::write(
        &path,
        serde_json::json!({ "groups": [{ "name": "d", "rules": [{ "record": "x", "expr": "sum by (le (x)" }] }] }).to_string(),
    )
    .unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "promtool accepted a broken query");
}

/// A Prometheus server on a loopback port with its own data directory,
/// killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    /// Scrapes each `(job, target)` every second and evaluates the
    /// repository's rules every second.
    fn start(bin: &std::path::Path, jobs: &[(&str, SocketAddr)]) -> Self {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let rules = repo_path("deploy/prometheus/rules");
        let scrape: Vec<Value> = jobs
            .iter()
            .map(|(job, target)| {
                serde_json::json!({
                    "job_name": job,
                    "static_configs": [{ "targets": [target.to_string()] }],
                })
            })
            .collect();
        let config = serde_json::json!({
            "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
            "rule_files": [format!("{}/*.yml", rules.display())],
            "scrape_configs": scrape,
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, failing the test on an error answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url =
            reqwest::Url::parse_with_params(&format!("http://{}/api/v1/{path}", self.addr), params)
                .expect("a valid URL");
        let answer: Value = self
            .http
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(answer["status"], "success", "{url} {params:?}: {answer}");
        answer["data"].clone()
    }

    async fn ready(&self) -> bool {
        self.http
            .get(format!("http://{}/-/ready", self.addr))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Every series of `metric` scraped from the bridge or the inspector, as label maps.
    async fn series(&self, metric: &str) -> Vec<BTreeMap<String, String>> {
        let matcher = format!("{{__name__=\"{metric}\", job=~\"{BRIDGE_JOB}|{INSPECTOR_JOB}\"}}");
        let data = self.api("series", &[("match[]", &matcher)]).await;
        serde_json::from_value(data).expect("series are label maps")
    }

    /// The value of an instant query's only sample, if it has one.
    async fn value(&self, query: &str) -> Option<f64> {
        let data = self.api("query", &[("query", query)]).await;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Alert name → states of its active alerts.
    async fn active_alerts(&self) -> BTreeMap<String, BTreeSet<String>> {
        let data = self.api("alerts", &[]).await;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in data["alerts"].as_array().into_iter().flatten() {
            out.entry(a["labels"]["alertname"].as_str().unwrap_or("?").to_owned())
                .or_default()
                .insert(a["state"].as_str().unwrap_or("?").to_owned());
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_a_real_bridge_and_inspector_sees_every_metric_the_rules_and_dashboard_read()
 {
    let Some(bin) = external_tool("PROMETHEUS_BIN") else {
        return;
    };
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "2048"),
            ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s"),
        ],
    ));
    // The consumer gauges come from an inspector's admin port, scraped as
    // the compose profile scrapes it.
    let inspector = TestInspector::spawn(&nats.url(), None).await;
    let prometheus = Prometheus::start(
        &bin,
        &[
            (BRIDGE_JOB, bridge.admin_addr),
            (INSPECTOR_JOB, inspector.admin_addr),
        ],
    );
    let up = eventually(Duration::from_secs(60), || async {
        prometheus.ready().await && prometheus.value("sum(up)").await == Some(2.0)
    })
    .await;
    assert!(
        up,
        "Prometheus never scraped both the bridge and the inspector:\n{}",
        prometheus.log()
    );

    // Traffic: an event of every seed type, a duplicate, the probe, and a
    // refusal of each kind a sender can cause.
    let http = reqwest::Client::new();
    let url = bridge.url("/webhooks/fastpix");
    let post = |body: String, signature: Option<String>| {
        let mut req = http.post(&url).body(body);
        if let Some(sig) = signature {
            req = req.header("FastPix-Signature", sig);
        }
        async move { req.send().await.expect("bridge answers").status().as_u16() }
    };
    let signed = |body: &str| Some(sign(SECRET, body.as_bytes()));
    for (i, t) in SEED_TYPES.iter().enumerate() {
        let body = event_body(t, &format!("prom-{i}"));
        assert_eq!(post(body.clone(), signed(&body)).await, 200, "{t}");
    }
    let body = event_body(SEED_TYPES[0], "prom-0");
    assert_eq!(post(body.clone(), signed(&body)).await, 200, "duplicate");
    assert_eq!(post("{}".into(), None).await, 200, "probe");
    let body = event_body("video.media.ready", "refused");
    assert_eq!(post(body.clone(), None).await, 401, "unsigned");
    assert_eq!(
        post(body.clone(), signed("another body")).await,
        401,
        "bad_signature"
    );
    let big = event_body("video.media.ready", &"x".repeat(3000));
    assert_eq!(post(big.clone(), signed(&big)).await, 413, "too_large");
    assert_eq!(post("[1]".into(), signed("[1]")).await, 400, "invalid");
    let scraped = eventually(Duration::from_secs(30), || async {
        prometheus
            .value("sum(fastpix_bridge_requests_total{outcome=\"invalid\"})")
            .await
            == Some(1.0)
    })
    .await;
    assert!(scraped, "the refusals never reached Prometheus");

    // A consumer's worker: it handles every event but rejects one, which
    // becomes its dead letter; a second durable consumer reads nothing, so
    // its whole backlog is pending.
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("FASTPIX").await.expect("the events stream");
    let stored = stream.info().await.expect("stream info").state.messages;
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("idle".into()),
            ..Default::default()
        })
        .await
        .expect("durable consumer");
    let prefix = SubjectPrefix::default();
    let billing = Worker::new("FASTPIX", prefix.clone(), "billing", vec![prefix.all()]);
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let js = js.clone();
        async move {
            billing
                .run(
                    &js,
                    async {
                        let _ = stopped.await;
                    },
                    |d: Delivery| async move {
                        if d.event_id() == Some("prom-1") {
                            ConsumerOutcome::reject("no such media")
                        } else {
                            ConsumerOutcome::Success
                        }
                    },
                )
                .await
        }
    });
    let consumers_scraped = eventually(Duration::from_secs(60), || async {
        prometheus
            .value("sum(fastpix_dead_letters{consumer=\"billing\"})")
            .await
            == Some(1.0)
            && prometheus
                .value("sum(fastpix_consumer_pending{consumer=\"idle\"})")
                .await
                == Some(stored as f64)
            && prometheus
                .value("sum(fastpix_consumer_pending{consumer=\"billing\"})")
                .await
                == Some(0.0)
    })
    .await;
    let _ = stop_worker.send(());
    worker
        .await
        .expect("worker task")
        .expect("the worker stops cleanly");
    assert!(
        consumers_scraped,
        "Prometheus never saw the consumers' state from the inspector: {:?} {:?}\n{}",
        prometheus.series("fastpix_consumer_pending").await,
        prometheus.series("fastpix_dead_letters").await,
        prometheus.log()
    );
    // The dead letter raises its alert, through the real series (`for: 1m`:
    // pending first).
    let dead_letter_alert = eventually(Duration::from_secs(30), || async {
        prometheus
            .active_alerts()
            .await
            .get("FastPixDeadLetters")
            .is_some_and(|states| states.contains("pending"))
    })
    .await;
    assert!(dead_letter_alert, "FastPixDeadLetters never became pending");

    // While NATS is up, the alerts about it stay quiet on these real series.
    let healthy = prometheus.active_alerts().await;
    for quiet in [
        "FastPixBridgeNatsDisconnected",
        "FastPixBridgeNotReady",
        "FastPixBridgeDown",
    ] {
        assert!(
            !healthy.contains_key(quiet),
            "{quiet} with NATS up: {healthy:?}"
        );
    }

    // NATS goes away: deliveries get 503, the bridge reports it.
    nats.stop();
    let body = event_body("video.media.ready", "while-down");
    assert_eq!(
        post(body.clone(), signed(&body)).await,
        503,
        "nats_unavailable"
    );

    let expected_active = [
        "FastPixBridgeNatsDisconnected",
        "FastPixBridgeNotReady",
        "FastPixBridgeDeliveriesRetried",
        "FastPixBridgeSignatureFailures",
        "FastPixBridgeUnroutableDeliveries",
    ];
    let started = std::time::Instant::now();
    // The state the NATS alert had when first seen: its `for: 1m` keeps it
    // pending for a minute, far longer than one poll.
    let mut nats_down_first_seen = None;
    let (alerts, all_active) = loop {
        let alerts = prometheus.active_alerts().await;
        if nats_down_first_seen.is_none() {
            nats_down_first_seen = alerts.get("FastPixBridgeNatsDisconnected").cloned();
        }
        let all = expected_active.iter().all(|a| alerts.contains_key(*a));
        if all || started.elapsed() > Duration::from_secs(60) {
            break (alerts, all);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        all_active,
        "alerts active: {alerts:?}, expected at least {expected_active:?}\n{}",
        prometheus.log()
    );
    assert_eq!(
        nats_down_first_seen,
        Some(BTreeSet::from(["pending".to_owned()])),
        "FastPixBridgeNatsDisconnected becomes pending first"
    );
    assert!(
        alerts["FastPixBridgeUnroutableDeliveries"].contains("firing"),
        "for: 0m fires at once: {alerts:?}"
    );
    assert!(
        !alerts.contains_key("FastPixBridgeDown"),
        "the bridge is up and scraped: {alerts:?}"
    );

    // NATS comes back on the same port and store: the inspector reads the
    // consumers again, so their series are live when the queries below run
    // (on a loaded machine its first scrapes after the restart may not).
    nats.restart();
    let back = eventually(Duration::from_secs(60), || async {
        prometheus
            .value("sum(fastpix_dead_letters{consumer=\"billing\"})")
            .await
            == Some(1.0)
            && prometheus.value("sum(fastpix_inspector_ready)").await == Some(1.0)
            && prometheus
                .value("count(fastpix_consumer_pending)")
                .await
                .is_some_and(|n| n > 0.0)
    })
    .await;
    assert!(
        back,
        "the inspector's series never came back after NATS did"
    );

    // Every metric the rules and the dashboard may read, with its labels, and
    // every label value they match on among the values scraped.
    let mut seen: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for (metric, labels) in LIVE_METRICS {
        let series = prometheus.series(metric).await;
        assert!(
            !series.is_empty(),
            "Prometheus has no {metric} from the bridge or the inspector"
        );
        for s in &series {
            for label in *labels {
                assert!(s.contains_key(*label), "{metric} without `{label}`: {s:?}");
            }
        }
        seen.insert((*metric).to_owned(), series);
    }
    for (what, expr) in every_expression() {
        for s in selectors(&expr, &what) {
            let Some(series) = seen.get(&s.name) else {
                continue;
            };
            for (label, op, value) in &s.matchers {
                if matches!(label.as_str(), "__name__" | "job" | "instance") {
                    continue;
                }
                let wanted: Vec<&str> = match op {
                    MatchOp::Equal => vec![value.as_str()],
                    MatchOp::Re(_) => value.split('|').collect(),
                    _ => continue,
                };
                for w in wanted {
                    assert!(
                        series
                            .iter()
                            .any(|s| s.get(label).map(String::as_str) == Some(w)),
                        "{what} matches {}{{{label}=\"{w}\"}}, which neither the bridge nor the inspector exports",
                        s.name
                    );
                }
            }
        }
    }
    // What the rules record exists too, so the dashboard has data to draw.
    for name in recorded_names() {
        let data = prometheus
            .api("series", &[("match[]", name.as_str())])
            .await;
        assert!(
            data.as_array().is_some_and(|a| !a.is_empty()),
            "the rules never recorded {name}"
        );
    }
    // Every dashboard query runs, and the bridge's own ones have data.
    for (what, query) in dashboard_queries() {
        let promql = as_promql(&query);
        let data = prometheus.api("query", &[("query", promql.as_str())]).await;
        assert!(
            data["result"].as_array().is_some_and(|r| !r.is_empty()),
            "{what}: {promql} has no data: {data}"
        );
    }
    drop(inspector);
    drop(bridge);
}
