use super::*;

/// The text as a real Prometheus parser reads it.
fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or_default()
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// `# TYPE` names in the text.
fn typed(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn text_parses_and_carries_build_info() {
    let text = encode();
    let scrape = parse(&text);
    assert!(text.contains("# TYPE crius_build_info gauge\n"), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&scrape, "crius_build_info", &[("version", version)]),
        Some(1.0)
    );
}

#[test]
fn rpc_counts_and_latencies_grow_per_method_and_code() {
    let labels = [("method", "UnitTestCall"), ("code", "NotFound")];
    let before = parse(&encode());
    let count = |s: &prometheus_parse::Scrape| {
        value(s, "crius_rpc_requests_total", &labels).unwrap_or_default()
    };
    rpc("UnitTestCall", "NotFound", Duration::from_millis(3));
    rpc("UnitTestCall", "NotFound", Duration::from_millis(30));
    rpc("UnitTestCall", "OK", Duration::from_millis(1));
    let after = parse(&encode());
    assert_eq!(count(&after) - count(&before), 2.0);
    // The histogram counted the same calls, 3 ms under its 4 ms bucket.
    assert_eq!(
        value(&after, "crius_rpc_duration_seconds_count", &labels),
        Some(count(&after))
    );
    let histogram = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "crius_rpc_duration_seconds"
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .expect("histogram sample");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
    assert!(at(0.004) >= 1.0 && at(0.032) >= at(0.004) + 1.0);
}

#[test]
fn pulls_phases_plugins_and_exit_lag_are_labelled() {
    image_pull(None, 1000, Duration::from_secs(2));
    image_pull(
        Some(ErrorKind::Unauthenticated),
        10,
        Duration::from_millis(200),
    );
    pod_phase(Phase::RuncCreate, Duration::from_millis(40));
    cni_plugin(
        "unit-bridge",
        "ADD",
        PluginOutcome::Timeout,
        Duration::from_secs(1),
    );
    exit_noticed(Duration::from_millis(2));
    let scrape = parse(&encode());
    assert!(value(&scrape, "crius_image_pull_bytes_total", &[("result", "ok")]).unwrap() >= 1000.0);
    assert!(
        value(
            &scrape,
            "crius_image_pulls_total",
            &[("result", "unauthenticated")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &scrape,
            "crius_pod_start_phase_duration_seconds_count",
            &[("phase", "runc_create")]
        )
        .unwrap()
            >= 1.0
    );
    let plugin = [
        ("plugin", "unit-bridge"),
        ("command", "ADD"),
        ("result", "timeout"),
    ];
    assert_eq!(
        value(&scrape, "crius_cni_plugin_duration_seconds_count", &plugin),
        Some(1.0)
    );
    assert!(value(&scrape, "crius_exit_watcher_lag_seconds_count", &[]).unwrap() >= 1.0);
}

#[test]
fn live_objects_are_counted_when_scraped_and_absent_without_a_source() {
    let live = Arc::new(Live::default());
    let mut registry = Registry::with_prefix("crius");
    registry.register_collector(Box::new(live.clone()));
    let text = |registry: &Registry| {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
        text
    };
    assert_eq!(text(&registry), "");

    let pods = std::sync::atomic::AtomicU64::new(2);
    let pods = Arc::new(pods);
    let counted = pods.clone();
    let _ = live.source.set(Box::new(move || {
        Some(LiveCounts {
            pods: vec![
                ("ready", counted.load(std::sync::atomic::Ordering::SeqCst)),
                ("notready", 1),
            ],
            containers: vec![("running", 3), ("exited", 0)],
            shims: 3,
        })
    }));
    let scrape = parse(&text(&registry));
    assert_eq!(
        value(&scrape, "crius_pods", &[("state", "ready")]),
        Some(2.0)
    );
    assert_eq!(
        value(&scrape, "crius_containers", &[("state", "running")]),
        Some(3.0)
    );
    assert_eq!(value(&scrape, "crius_shims", &[]), Some(3.0));
    // Counted again on the next scrape, not remembered.
    pods.store(5, std::sync::atomic::Ordering::SeqCst);
    let scrape = parse(&text(&registry));
    assert_eq!(
        value(&scrape, "crius_pods", &[("state", "ready")]),
        Some(5.0)
    );
    // A family shows once it has a sample.
    rpc("UnitTestCall", "OK", Duration::ZERO);
    image_pull(None, 0, Duration::ZERO);
    pod_phase(Phase::Start, Duration::ZERO);
    cni_plugin("unit-bridge", "DEL", PluginOutcome::Ok, Duration::ZERO);
    let mut names = typed(&text(&registry));
    names.extend(typed(&encode()));
    for family in FAMILIES {
        assert!(
            names.iter().any(|n| n == family),
            "{family} not exported: {names:?}"
        );
    }
}

/// Every metric the Grafana dashboard queries is one criusd exports.
#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../manifests/grafana/crius.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = 0;
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("crius_") {
                continue;
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
                .unwrap_or(word);
            assert!(
                FAMILIES.contains(&family),
                "{word} in {expr:?} is not exported"
            );
            used += 1;
        }
    }
    // The headline ones are there.
    let all = exprs.join("\n");
    for headline in [
        "crius_rpc_duration_seconds_bucket{instance=~\"$instance\", method=\"RunPodSandbox\"",
        "crius_rpc_requests_total{instance=~\"$instance\", code!=\"OK\"}",
        "crius_image_pulls_total",
        "crius_image_pull_bytes_total",
    ] {
        assert!(all.contains(headline), "{headline}");
    }
    assert!(used >= exprs.len());
}

/// What recording one RPC costs (a counter and a histogram, looked up by
/// labels), and what encoding costs once many series exist.
#[test]
#[ignore = "benchmark: cargo test --lib recording_cost -- --ignored --nocapture"]
fn recording_cost() {
    const CALLS: u32 = 1_000_000;
    rpc("BenchCall", "OK", Duration::from_millis(1));
    let started = std::time::Instant::now();
    for _ in 0..CALLS {
        rpc("BenchCall", "OK", Duration::from_millis(1));
    }
    let per_call = started.elapsed() / CALLS;
    let started = std::time::Instant::now();
    let text = encode();
    eprintln!(
        "recording one RPC: {per_call:?}; encoding {} bytes: {:?}",
        text.len(),
        started.elapsed()
    );
    assert!(per_call < Duration::from_micros(10), "{per_call:?}");
}
