//! Against the OpenStack lab's real Prometheus (an "extra", `../shared/openstack-lab`, README
//! "Extras"): series set in the lab's exporter (127.0.0.1:9199) come back through
//! `PrometheusSource`, mapped to members by their Nova `server_id` tag, and a deleted series is
//! missing, not zero.

use std::time::Duration;

use flotilla_metrics_prometheus::{MemberBy, PrometheusSettings, PrometheusSource, QuerySettings};
use flotilla_model::{Clock, GroupId, Instance, Metric, MetricSource, Sample, SystemClock, Timestamp};
use flotilla_testkit::lab::{Lab, EXTRAS_PORTS};
use flotilla_testkit::require_lab;

const PROMETHEUS: u16 = EXTRAS_PORTS.prometheus;
const EXPORTER: u16 = EXTRAS_PORTS.exporter;
/// How long Prometheus may take to show a change (it scrapes every second).
const SETTLE: Duration = Duration::from_secs(20);

/// Sets (or, with `delete`, removes) exporter series: lines `name{labels} value`.
async fn exporter(http: &reqwest::Client, lines: &[String]) {
    let resp = http
        .post(format!("http://127.0.0.1:{EXPORTER}/metrics"))
        .body(lines.join("\n") + "\n")
        .send()
        .await
        .expect("exporter answers");
    assert!(resp.status().is_success(), "exporter: {} {}", resp.status(), resp.text().await.unwrap_or_default());
}

fn member(name: &str, server_id: &str) -> Instance {
    let mut m = Instance::new(name, &GroupId::new("lab"), Timestamp(1));
    m.tags.insert("server_id".into(), server_id.into());
    m
}

fn get(samples: &[Sample], id: &str, metric: Metric) -> Option<f64> {
    samples.iter().find(|s| s.instance.as_str() == id).and_then(|s| s.get(metric))
}

#[tokio::test]
async fn reads_the_labs_prometheus_and_a_deleted_series_goes_missing() {
    require_lab!(Lab::OpenStackExtras);
    let unique = format!("flotilla-prom-{}-{}", std::process::id(), SystemClock.now().as_millis());
    let group = GroupId::new(unique.clone());
    let (id_a, id_b) = (format!("{unique}-a"), format!("{unique}-b"));
    let series = |name: &str, id: &str| format!(r#"{name}{{server_id="{id}",server_group="{unique}",project="p"}}"#);
    let cpu_a = series("lab_cpu_util", &id_a);
    let cpu_b = series("lab_cpu_util", &id_b);
    let mem_a = series("lab_mem_util", &id_a);
    let all = [cpu_a.clone(), cpu_b.clone(), mem_a.clone()];

    let http = reqwest::Client::new();
    exporter(&http, &[format!("{cpu_a} 85"), format!("{cpu_b} 40"), format!("{mem_a} 61.5")]).await;

    // Run the checks as a task so that the series are deleted even when one fails.
    let checks = tokio::spawn({
        let group = group.clone();
        let http = http.clone();
        let (id_a, id_b, cpu_b) = (id_a.clone(), id_b.clone(), cpu_b.clone());
        async move {
            let query = |metric, text: &str| QuerySettings {
                metric,
                query: text.into(),
                member_label: "server_id".into(),
                member_by: MemberBy::Tag("server_id".into()),
            };
            let settings = PrometheusSettings::new(
                format!("http://127.0.0.1:{PROMETHEUS}"),
                vec![
                    query(Metric::Cpu, r#"avg by (server_id) (lab_cpu_util{server_group="{group}"})"#),
                    query(Metric::Mem, r#"max by (server_id) (lab_mem_util{server_group="{group}"})"#),
                ],
            );
            let src = PrometheusSource::new(settings).unwrap();
            let members = [member("lab_1", &id_a), member("lab_2", &id_b), member("lab_3", "no-such-server")];

            let deadline = tokio::time::Instant::now() + SETTLE;
            let samples = loop {
                let samples = src.sample(&group, &members, SystemClock.now()).await.expect("prometheus answers");
                let got = (
                    get(&samples, "lab_1", Metric::Cpu),
                    get(&samples, "lab_2", Metric::Cpu),
                    get(&samples, "lab_1", Metric::Mem),
                );
                if got == (Some(85.0), Some(40.0), Some(61.5)) {
                    break samples;
                }
                assert!(tokio::time::Instant::now() < deadline, "not seen within {SETTLE:?}; last {samples:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            assert_eq!(get(&samples, "lab_2", Metric::Mem), None, "lab_2 has no mem series: missing");
            assert!(samples.iter().all(|s| s.instance.as_str() != "lab_3"), "a member with no series has no sample");

            exporter(&http, &[format!("{cpu_b} delete")]).await;
            let deadline = tokio::time::Instant::now() + SETTLE;
            loop {
                let samples = src.sample(&group, &members, SystemClock.now()).await.expect("prometheus answers");
                let b = get(&samples, "lab_2", Metric::Cpu);
                assert_ne!(b, Some(0.0), "a deleted series must never read as zero");
                if b.is_none() {
                    assert_eq!(get(&samples, "lab_1", Metric::Cpu), Some(85.0), "the other member keeps its value");
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "still {b:?} {SETTLE:?} after the delete");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let outcome = checks.await;
    exporter(&http, &all.map(|s| format!("{s} delete"))).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
