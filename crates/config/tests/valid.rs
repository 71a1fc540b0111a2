//! Valid configuration files become the expected model values, defaults applied.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_config::{load, parse, Config, GroupConfig, MetricSourceKind, MetricsConfig, ProviderConfig, StoreConfig};
use flotilla_model::{
    Aggregation, GroupId, GroupSpec, HealthReplace, InstanceSpec, MetricChoice, Mode, PolicySpec, RequestCountSpec,
    Rollout, TargetMetric, TargetSpec, ThresholdSpec, Victim,
};

/// The template version a default template with `vcpus` gets.
fn version(vcpus: u32) -> String {
    flotilla_config::validate::template_version(&flotilla_config::raw::RawTemplate {
        vcpus,
        ..flotilla_config::raw::RawTemplate::default()
    })
}

/// Versions are stored with every member: a new build must compute the same one for the same
/// template, or upgrading Flotilla would replace every member.
#[test]
fn template_versions_are_stable_across_builds() {
    assert_eq!(version(1), version(1));
    assert_ne!(version(1), version(2));
    assert_eq!(version(1).len(), 12);
    assert_eq!(version(1), "8ed6679ee953");
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_full_file_round_trips_to_group_specs() {
    let yaml = "\
state_dir: /var/lib/flotilla
store:
  kind: sqlite
  path: state.db
  sample_window: 100
provider:
  kind: local
  start_timeout: 1m
groups:
  - name: web.front_1
    mode: scale
    min: 2
    max: 6
    increment: 2
    interval: 250ms
    stale_after: 2s
    cooldown_up: 1m 30s
    cooldown_down: 0s
    drain_timeout: 45s
    victim: least-busy
    policy:
      metric: cpu
      aggregation: max
      high: 75.5
      low: 0
      min_up: 1
      min_down: 10
    template:
      base_name: front
      clone_base: front-copy
      vcpus: 64
";
    let config = parse(yaml, "full.yaml").unwrap();
    let expected = Config {
        state_dir: Some(PathBuf::from("/var/lib/flotilla")),
        store: StoreConfig::Sqlite { path: PathBuf::from("state.db"), sample_window: 100 },
        provider: ProviderConfig::Local { start_timeout: secs(60) },
        metrics: MetricsConfig { sources: vec![MetricSourceKind::Local], ssh: None, push: None, prometheus: None },
        api: None,
        warnings: Vec::new(),
        groups: vec![GroupConfig {
            balancer: None,
            template: None,
            spec: GroupSpec {
                id: GroupId::new("web.front_1"),
                mode: Mode::Scale,
                min: 2,
                max: 6,
                increment: 2,
                cooldown_up: secs(90),
                cooldown_down: secs(0),
                interval: Duration::from_millis(250),
                stale_after: secs(2),
                policy: PolicySpec::Threshold(ThresholdSpec {
                    metric: MetricChoice::Cpu,
                    high: 75.5,
                    low: 0.0,
                    min_up: 1,
                    min_down: 10,
                }),
                aggregation: Aggregation::Max,
                victim: Victim::LeastBusy,
                drain_timeout: secs(45),
                instance: InstanceSpec { base_name: "front".into(), clone_base: "front-copy".into(), vcpus: 64 },
                template_version: version(64),
                rollout: Some(Rollout { max_unavailable: 1 }),
                health_replace: None,
                checkin: None,
                alarms: Vec::new(),
            },
        }],
    };
    assert_eq!(config, expected);
    assert_eq!(config.store_path(), PathBuf::from("/var/lib/flotilla/state.db"));
}

#[test]
fn defaults_fill_everything_but_the_name() {
    let config = parse("groups:\n  - name: a\n  - name: b\n    mode: handover\n    interval: 2s\n", "d.yaml").unwrap();
    assert_eq!(config.state_dir, None);
    assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
    assert_eq!(config.provider, ProviderConfig::Local { start_timeout: secs(20) });

    let a = &config.groups[0].spec;
    let expected_a = GroupSpec {
        id: GroupId::new("a"),
        mode: Mode::Scale,
        min: 1,
        max: 4,
        increment: 1,
        cooldown_up: secs(30),
        cooldown_down: secs(30),
        interval: secs(5),
        stale_after: secs(15),
        policy: PolicySpec::Threshold(ThresholdSpec {
            metric: MetricChoice::Max,
            high: 80.0,
            low: 20.0,
            min_up: 4,
            min_down: 4,
        }),
        aggregation: Aggregation::Mean,
        victim: Victim::Oldest,
        drain_timeout: secs(30),
        instance: InstanceSpec { base_name: "a".into(), clone_base: "a_clone".into(), vcpus: 1 },
        template_version: version(1),
        rollout: Some(Rollout { max_unavailable: 1 }),
        health_replace: None,
        checkin: None,
        alarms: Vec::new(),
    };
    assert_eq!(a, &expected_a);

    let b = &config.groups[1].spec;
    assert_eq!((b.mode, b.max), (Mode::Handover, 2), "handover defaults to max 2");
    assert_eq!(b.stale_after, secs(6), "stale_after defaults to 3 x interval");
    assert_eq!((b.instance.base_name.as_str(), b.instance.clone_base.as_str()), ("b", "b_clone"));
}

#[test]
fn clone_base_follows_an_explicit_base_name() {
    let config = parse("groups:\n  - name: a\n    template: {base_name: vm}\n", "t.yaml").unwrap();
    assert_eq!(config.groups[0].spec.instance.clone_base, "vm_clone");
}

#[test]
fn merge_keys_share_settings_between_groups() {
    let yaml = "\
groups:
  - &base
    name: a
    mode: handover
    interval: 2s
    policy: {high: 90, low: 10}
  - <<: *base
    name: b
";
    let config = parse(yaml, "t.yaml").unwrap();
    let (a, b) = (&config.groups[0].spec, &config.groups[1].spec);
    assert_eq!(b.id, GroupId::new("b"));
    let t = b.policy.threshold().expect("a threshold");
    assert_eq!((b.mode, b.interval, t.high, t.low), (a.mode, a.interval, 90.0, 10.0));
    assert_eq!(b.instance.base_name, "b");
}

#[test]
fn empty_sections_mean_defaults() {
    let config = parse("store:\nprovider: ~\ngroups:\n  - name: a\n    stale_after: ~\n", "t.yaml").unwrap();
    assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
    assert_eq!(config.groups[0].spec.stale_after, secs(15));
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, "groups:\n  - name: a\n").unwrap();
    assert_eq!(load(&path).unwrap().groups[0].spec.id, GroupId::new("a"));
}

/// The group fields every policy test below leaves at their defaults, with `policy` in place.
fn defaults_with(name: &str, policy: PolicySpec) -> GroupSpec {
    GroupSpec {
        id: GroupId::new(name),
        mode: Mode::Scale,
        min: 1,
        max: 4,
        increment: 1,
        cooldown_up: secs(30),
        cooldown_down: secs(30),
        interval: secs(5),
        stale_after: secs(15),
        policy,
        aggregation: Aggregation::Mean,
        victim: Victim::Oldest,
        drain_timeout: secs(30),
        instance: InstanceSpec { base_name: name.into(), clone_base: format!("{name}_clone"), vcpus: 1 },
        template_version: version(1),
        rollout: Some(Rollout { max_unavailable: 1 }),
        health_replace: None,
        checkin: None,
        alarms: Vec::new(),
    }
}

#[test]
fn each_policy_kind_round_trips() {
    let yaml = "\
groups:
  - name: t
    policy:
      kind: threshold
      metric: mem
      aggregation: max
      high: 70
      low: 10
      min_up: 2
      min_down: 3
  - name: rps
    policy: {metric: rps, high: 1500, low: 100.5}
    balancer: {listen: 127.0.0.1:9001}
  - name: tt
    policy:
      kind: target
      metric: rps
      target: 250.5
      scale_in_samples: 5
    balancer: {listen: 127.0.0.1:9002}
  - name: tcpu
    policy: {kind: target, metric: cpu, target: 100}
  - name: r
    policy:
      kind: requests
      requests: 10
      window: 90s
    balancer: {listen: 127.0.0.1:9003}
  - name: rdefault
    policy: {window: 1s, requests: 1, kind: requests}
    balancer: {listen: 127.0.0.1:9004}
";
    let config = parse(yaml, "kinds.yaml").unwrap();
    let threshold = |metric, high, low, min_up, min_down| {
        PolicySpec::Threshold(ThresholdSpec { metric, high, low, min_up, min_down })
    };
    let target =
        |metric, target, scale_in_samples| PolicySpec::TargetTracking(TargetSpec { metric, target, scale_in_samples });
    let requests = |requests, window| PolicySpec::RequestCount(RequestCountSpec { requests, window });
    // Groups with a balancer replace members failing its health check.
    let balanced = |spec: GroupSpec| GroupSpec {
        health_replace: Some(HealthReplace { grace: secs(300), after: secs(60) }),
        checkin: None,
        ..spec
    };
    let expected = vec![
        GroupSpec {
            aggregation: Aggregation::Max,
            ..defaults_with("t", threshold(MetricChoice::Mem, 70.0, 10.0, 2, 3))
        },
        // Requests per second are not percent: above 100 is fine.
        balanced(defaults_with("rps", threshold(MetricChoice::Rps, 1500.0, 100.5, 4, 4))),
        balanced(defaults_with("tt", target(TargetMetric::Rps, 250.5, 5))),
        // scale_in_samples defaults to 3; a cpu target of exactly 100 is allowed.
        defaults_with("tcpu", target(TargetMetric::Cpu, 100.0, 3)),
        balanced(defaults_with("r", requests(10, secs(90)))),
        // `kind` may come last.
        balanced(defaults_with("rdefault", requests(1, secs(1)))),
    ];
    assert_eq!(config.specs(), expected);
}

#[test]
fn a_request_window_defaults_to_a_minute_and_may_be_five() {
    let yaml = "groups:
  - name: a
    policy: {kind: requests, requests: 3}
    balancer: {listen: 127.0.0.1:9001}
  - name: b
    policy: {kind: requests, requests: 3, window: 5m}
    balancer: {listen: 127.0.0.1:9002}
";
    let config = parse(yaml, "w.yaml").unwrap();
    let windows: Vec<_> = config
        .groups
        .iter()
        .map(|g| match &g.spec.policy {
            PolicySpec::RequestCount(r) => r.window,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(windows, [secs(60), secs(300)]);
}

#[test]
fn an_explicit_threshold_kind_is_the_default() {
    let explicit = parse("groups:\n  - name: a\n    policy: {kind: threshold}\n", "k.yaml").unwrap();
    let default = parse("groups:\n  - name: a\n", "k.yaml").unwrap();
    assert_eq!(explicit, default);
    assert_eq!(default.groups[0].spec.policy.kind(), "threshold");
}

#[test]
fn balancer_section_round_trips_with_defaults() {
    use flotilla_config::BalancerSettings;
    use flotilla_lb::{Mode, Selection};
    let yaml = "
groups:
  - name: web
    policy: {kind: requests, requests: 10, window: 30s}
    balancer:
      listen: 127.0.0.1:8000
      selection: round-robin
      health: {path: /ready, rise: 2}
  - name: db
    balancer: {listen: 127.0.0.1:5433, mode: tcp}
";
    let config = parse(yaml, "lb.yaml").unwrap();
    let balancer = |g: &str| config.group(&GroupId::new(g)).and_then(|g| g.balancer.clone()).unwrap();
    let web = &balancer("web");
    assert_eq!(
        web,
        &BalancerSettings {
            listen: "127.0.0.1:8000".parse().unwrap(),
            mode: Mode::Http,
            selection: Selection::RoundRobin,
            health_path: "/ready".into(),
            health_interval: secs(1),
            health_timeout: secs(1),
            rise: 2,
            fall: 2,
            queue_timeout: secs(30),
            response_timeout: secs(60),
            queue_limit: 1024,
            retries: 3,
            trust_forwarded: false,
        }
    );
    let db = &balancer("db");
    assert_eq!(db.mode, Mode::Tcp);
    assert_eq!(db.selection, Selection::LeastOutstanding);
    assert_eq!(config.groups.iter().filter(|g| g.balancer.is_some()).count(), 2);
    // A member failing its health check is replaced by default: 5 minutes of grace, 1 of failing.
    let health = |g: &str| config.group(&GroupId::new(g)).unwrap().spec.health_replace;
    assert_eq!(health("web"), Some(HealthReplace { grace: secs(300), after: secs(60) }));
}

#[test]
fn health_replacement_is_set_or_turned_off_and_needs_a_balancer() {
    let yaml = "
groups:
  - name: a
    balancer: {listen: 127.0.0.1:8000, health: {grace: 90s, replace_after: 15s}}
  - name: b
    balancer: {listen: 127.0.0.1:8001, health: {replace: false}}
  - name: c
";
    let config = parse(yaml, "h.yaml").unwrap();
    let health = |g: &str| config.group(&GroupId::new(g)).unwrap().spec.health_replace;
    assert_eq!(health("a"), Some(HealthReplace { grace: secs(90), after: secs(15) }));
    assert_eq!(health("b"), None, "turned off");
    assert_eq!(health("c"), None, "no balancer, no health check");
}
