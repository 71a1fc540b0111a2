//! `/metrics`: the daemon in Prometheus's text format. Each scrape reads the controller's status
//! and counters, the provider-call figures and the balancer's statistics into a fresh registry,
//! so nothing here is kept twice.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use flotilla_controller::Controller;
use flotilla_lb::EmbeddedBalancer;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metered::ProviderCalls;

type Labels = Vec<(String, String)>;
/// Counts (requests, decisions) are integers; seconds and rates are not.
type Counters = Family<Labels, Counter>;
type Seconds = Family<Labels, Counter<f64, AtomicU64>>;
type Gauges = Family<Labels, Gauge>;
type Values = Family<Labels, Gauge<f64, AtomicU64>>;
type Latencies = Family<Labels, KeptHistogram>;

/// A histogram the balancer already keeps (its buckets since a member was added), handed to the
/// encoder as it is: prometheus-client's own `Histogram` only counts what it observes itself.
#[derive(Debug, Default)]
struct KeptHistogram(std::sync::Mutex<flotilla_lb::LatencyHistogram>);

impl KeptHistogram {
    fn set(&self, h: &flotilla_lb::LatencyHistogram) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = h.clone();
    }
}

impl prometheus_client::metrics::TypedMetric for KeptHistogram {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for KeptHistogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Per-bucket counts, then the overflow as +Inf (f64::MAX is the encoder's +Inf).
        let mut buckets: Vec<(f64, u64)> = flotilla_lb::LATENCY_BOUNDS_S.iter().copied().zip(h.buckets).collect();
        buckets.push((f64::MAX, h.count - h.buckets.iter().sum::<u64>()));
        #[allow(clippy::cast_precision_loss)] // a sum of microseconds, far below 2^53 in practice
        let sum = h.sum_us as f64 / 1e6;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, h.count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// What a scrape reads.
pub struct Exporter {
    pub controller: Arc<Controller>,
    pub lb: Arc<EmbeddedBalancer>,
    pub calls: ProviderCalls,
}

/// Registers a fresh family under `name` and returns it (a handle to the same family).
fn add<M: prometheus_client::registry::Metric + Clone + Default>(reg: &mut Registry, name: &str, help: &str) -> M {
    let m = M::default();
    reg.register(name, help, m.clone());
    m
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Exporter {
    /// The text exposition of everything, now.
    pub fn render(&self) -> String {
        let mut reg = Registry::with_prefix("flotilla");
        let min: Gauges = add(&mut reg, "group_min", "The group's least size");
        let max: Gauges = add(&mut reg, "group_max", "The group's largest size");
        let running: Gauges = add(&mut reg, "group_running", "Running members at the last pass");
        let sampled: Gauges = add(&mut reg, "group_sampled", "Running members with a fresh sample at the last pass");
        let desired: Gauges = add(&mut reg, "group_desired", "Members the target policy asked for at the last pass");
        let value: Values = add(&mut reg, "group_metric_value", "The value the policy compared at the last pass");
        let failing: Gauges = add(&mut reg, "group_failing", "1 while the group's passes fail (it backs off)");
        let decisions: Counters = add(&mut reg, "decisions", "Decisions by outcome (held-back: paused or dry run)");
        let ops: Counters = add(&mut reg, "operations", "Operations by kind and result");
        let op_secs: Seconds = add(&mut reg, "operation_seconds", "Seconds spent in operations, by kind and result");
        let source_errors: Counters = add(&mut reg, "metric_source_errors", "Failed reads of a metric source");
        let pass_errors: Counters = add(&mut reg, "pass_errors", "Passes that ended in an error");
        let age: Values = add(
            &mut reg,
            "member_sample_age_seconds",
            "Age of the member's oldest reading at the last pass (a quiet source shows here first)",
        );
        for spec in self.controller.groups() {
            let g = spec.id.as_str();
            let group = l(&[("group", g)]);
            min.get_or_create(&group).set(i64::from(spec.min));
            max.get_or_create(&group).set(i64::from(spec.max));
            let status = self.controller.status(&spec.id).unwrap_or_default();
            failing.get_or_create(&group).set(i64::from(status.last_error.is_some()));
            if let Some(e) = &status.last {
                running.get_or_create(&group).set(i64::from(e.running));
                sampled.get_or_create(&group).set(i64::from(e.sampled));
                if let Some(d) = e.desired {
                    desired.get_or_create(&group).set(i64::from(d));
                }
                if let Some(v) = e.value {
                    value.get_or_create(&group).set(v);
                }
            }
            for input in &status.inputs {
                if let Some(oldest) = input.values.iter().map(|(_, _, age_ms)| *age_ms).max() {
                    #[allow(clippy::cast_precision_loss)] // ages in ms fit f64 exactly below 2^53
                    age.get_or_create(&l(&[("group", g), ("member", input.member.as_str())]))
                        .set(oldest as f64 / 1000.0);
                }
            }
            let c = self.controller.counters(&spec.id).unwrap_or_default();
            for (outcome, n) in &c.decisions {
                decisions.get_or_create(&l(&[("group", g), ("outcome", outcome)])).inc_by(*n);
            }
            for ((kind, result), (n, secs)) in &c.operations {
                let labels = l(&[("group", g), ("kind", kind), ("result", result)]);
                ops.get_or_create(&labels).inc_by(*n);
                op_secs.get_or_create(&labels).inc_by(*secs);
            }
            for (source, n) in &c.source_errors {
                source_errors.get_or_create(&l(&[("group", g), ("source", source)])).inc_by(*n);
            }
            pass_errors.get_or_create(&group).inc_by(c.pass_errors);
        }
        reg.register(
            "provider_call_seconds",
            "Provider call latency, by provider and call",
            self.calls.seconds.clone(),
        );
        reg.register(
            "provider_call_errors",
            "Provider calls that failed, by provider and call",
            self.calls.errors.clone(),
        );
        self.balancer(&mut reg);
        let mut out = String::new();
        if encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }

    fn balancer(&self, reg: &mut Registry) {
        let requests: Counters = add(reg, "balancer_requests", "Requests answered, by group and member");
        let errors: Counters =
            add(reg, "balancer_errors", "Answers with a 5xx status and proxy failures, by group and member");
        let retried: Counters = add(reg, "balancer_retried", "Attempts retried on another member, by group");
        let rejected: Counters = add(reg, "balancer_rejected", "Requests answered 503 for want of a member, by group");
        let inflight: Gauges = add(reg, "balancer_inflight", "Requests in flight, by group and member");
        let queued: Gauges = add(reg, "balancer_queued", "Requests waiting for a member, by group");
        let rps: Values =
            add(reg, "balancer_requests_per_second", "Request rate over the rate window, by group and member");
        // Quantiles the balancer computed over its rate window: gauges, one name each (a
        // `quantile` label is for summaries, which prometheus-client does not build).
        let p50: Values = add(reg, "balancer_latency_p50_seconds", "Median latency over the rate window");
        let p95: Values = add(reg, "balancer_latency_p95_seconds", "95th percentile latency over the rate window");
        let p99: Values = add(reg, "balancer_latency_p99_seconds", "99th percentile latency over the rate window");
        let healthy: Gauges = add(reg, "balancer_backend_healthy", "1 while a member passes its health check");
        let latency: Latencies =
            add(reg, "balancer_latency_seconds", "Latency of every answered request since the member joined");
        for group in self.lb.groups() {
            let Some(gb) = self.lb.group(&group) else { continue };
            let st = gb.stats();
            let g = group.as_str();
            retried.get_or_create(&l(&[("group", g)])).inc_by(st.retried_total);
            rejected.get_or_create(&l(&[("group", g)])).inc_by(st.rejected_total);
            queued.get_or_create(&l(&[("group", g)])).set(i64::try_from(st.queued).unwrap_or(i64::MAX));
            for b in &st.backends {
                let m = l(&[("group", g), ("member", &b.id)]);
                requests.get_or_create(&m).inc_by(b.traffic.requests_total);
                errors.get_or_create(&m).inc_by(b.traffic.errors_total);
                inflight.get_or_create(&m).set(i64::try_from(b.traffic.inflight).unwrap_or(i64::MAX));
                rps.get_or_create(&m).set(b.traffic.rps);
                latency.get_or_create(&m).set(&b.traffic.latency);
                for (family, v) in [(&p50, b.traffic.p50_ms), (&p95, b.traffic.p95_ms), (&p99, b.traffic.p99_ms)] {
                    if let Some(ms) = v {
                        family.get_or_create(&m).set(ms / 1000.0);
                    }
                }
            }
            for b in gb.backends() {
                healthy.get_or_create(&l(&[("group", g), ("member", &b.id)])).set(i64::from(b.healthy));
            }
        }
    }
}
