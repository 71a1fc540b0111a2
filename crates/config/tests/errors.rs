//! Bad configuration files: every problem reported at once, each with its exact field path and
//! line:column. Data-driven: each case is a YAML text and the errors it must produce, in order.

use flotilla_config::{parse, ConfigError};

/// `(path, line, col, message)`; line and col are 0 when the error has no position.
type Expected = (&'static str, usize, usize, &'static str);

struct Case {
    name: &'static str,
    yaml: &'static str,
    errors: &'static [Expected],
}

const CASES: &[Case] = &[
    Case {
        name: "tab in the indentation",
        yaml: "groups:\n  - name: a\n\tmode: scale\n",
        errors: &[(
            "",
            3,
            1,
            "found a tab character that violates indentation, while scanning a plain scalar at line 2 column 11",
        )],
    },
    Case {
        name: "bad indentation",
        yaml: "groups:\n  - name: a\n   mode: scale\n",
        errors: &[(
            "",
            3,
            4,
            "did not find expected '-' indicator, while parsing a block collection at line 2 column 3",
        )],
    },
    Case {
        name: "mapping value where none may be",
        yaml: "groups:\n  - name: a\n    policy: high: 3\n",
        errors: &[("", 3, 17, "mapping values are not allowed in this context")],
    },
    Case {
        name: "unknown field at the top level",
        yaml: "groups:\n  - name: a\ncolour: blue\n",
        errors: &[(
            "colour",
            3,
            1,
            "unknown field `colour`, expected one of `state_dir`, `store`, `provider`, `metrics`, `api`, `groups`",
        )],
    },
    Case {
        name: "unknown field in a group",
        yaml: "groups:\n  - name: a\n    speed: 3\n",
        errors: &[(
            "groups[0].speed",
            3,
            5,
            "unknown field `speed`, expected one of `name`, `mode`, `min`, `max`, `increment`, `interval`, \
             `stale_after`, `cooldown_up`, `cooldown_down`, `drain_timeout`, `victim`, `policy`, `template`, `balancer`, `replacement`, `checkin`, `alarms`",
        )],
    },
    Case {
        name: "unknown field in a policy",
        yaml: "groups:\n  - name: a\n    policy:\n      high: 90\n      hgih: 90\n",
        errors: &[(
            "groups[0].policy.hgih",
            5,
            7,
            "unknown field `hgih`, expected one of `kind`, `metric`, `aggregation`, `high`, `low`, `min_up`, \
             `min_down`",
        )],
    },
    Case {
        name: "wrong type",
        yaml: "groups:\n  - name: a\n    policy:\n      high: lots\n",
        errors: &[("groups[0].policy.high", 4, 13, "invalid type: string \"lots\", expected f64")],
    },
    Case {
        name: "negative count",
        yaml: "groups:\n  - name: a\n    min: -1\n",
        errors: &[("groups[0].min", 3, 10, "invalid value: integer `-1`, expected u32")],
    },
    Case {
        name: "empty value",
        yaml: "groups:\n  - name: a\n    min:\n    max: ~\n",
        errors: &[("groups[0].min", 3, 5, "invalid type: null, expected u32")],
    },
    Case {
        name: "low not below high",
        yaml: "groups:\n  - name: a\n    policy:\n      high: 50\n      low: 60\n",
        errors: &[("groups[0].policy.low", 5, 12, "low (60) must be less than high (50)")],
    },
    Case {
        name: "low not below a defaulted high points at low",
        yaml: "groups:\n  - name: a\n    policy: {low: 85}\n",
        errors: &[("groups[0].policy.low", 3, 19, "low (85) must be less than high (80)")],
    },
    Case {
        name: "low not below high, low defaulted: the policy mapping",
        yaml: "groups:\n  - name: a\n    policy:\n      high: 10\n",
        errors: &[("groups[0].policy.low", 3, 5, "low (20) must be less than high (10)")],
    },
    Case {
        name: "min above max",
        yaml: "groups:\n  - name: a\n    min: 3\n    max: 2\n",
        errors: &[("groups[0].min", 3, 10, "min (3) must not be greater than max (2)")],
    },
    Case {
        name: "min above the default max",
        yaml: "groups:\n  - name: a\n    min: 5\n",
        errors: &[("groups[0].min", 3, 10, "min (5) must not be greater than max (4, the default for scale mode)")],
    },
    Case {
        name: "handover needs two members",
        yaml: "groups:\n  - name: a\n    mode: handover\n    max: 1\n",
        errors: &[("groups[0].max", 4, 10, "handover mode needs max >= 2, room for the primary and its clone (got 1)")],
    },
    Case {
        name: "bad duration",
        yaml: "groups:\n  - name: a\n    interval: 5 parsecs\n",
        errors: &[(
            "groups[0].interval",
            3,
            15,
            "invalid duration `5 parsecs`: unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, \
             hours, days, weeks, months, years (and few variations)",
        )],
    },
    Case {
        name: "duration without a unit",
        yaml: "groups:\n  - name: a\n    cooldown_up: 30\n",
        errors: &[("groups[0].cooldown_up", 3, 18, "invalid duration `30`: a unit is needed, like `30s` or `30ms`")],
    },
    Case {
        name: "interval too short, stale_after below it",
        yaml: "groups:\n  - name: a\n    interval: 50ms\n    stale_after: 10ms\n",
        errors: &[
            ("groups[0].interval", 3, 15, "must be at least 100ms (got 50ms)"),
            ("groups[0].stale_after", 4, 18, "stale_after (10ms) must be at least interval (50ms)"),
        ],
    },
    Case {
        name: "absurd sizes name their bound",
        yaml: "store: {sample_window: 99999999}\ngroups:\n  - name: a\n    max: 5000\n    policy: {min_up: 100000}\n    balancer: {listen: \"127.0.0.1:0\", queue_limit: 0, health: {rise: 1000}}\n",
        errors: &[
            ("store.sample_window", 1, 24, "must be at most 1000000 (got 99999999)"),
            ("groups[0].max", 4, 10, "must be at most 1000 (got 5000)"),
            ("groups[0].policy.min_up", 5, 22, "must be at most 10000 (got 100000)"),
            ("groups[0].balancer.queue_limit", 6, 52, "must be between 1 and 1000000 (got 0)"),
            ("groups[0].balancer.health.rise", 6, 70, "must be between 1 and 100 (got 1000)"),
        ],
    },
    Case {
        name: "a response timeout out of bounds",
        yaml: "groups:\n  - name: a\n    balancer: {listen: \"127.0.0.1:0\", response_timeout: 2h}\n",
        errors: &[("groups[0].balancer.response_timeout", 3, 57, "must be 1s to 1h, got 2h")],
    },
    Case {
        name: "unknown mode",
        yaml: "groups:\n  - name: a\n    mode: elastic\n",
        errors: &[("groups[0].mode", 3, 11, "unknown variant `elastic`, expected `scale` or `handover`")],
    },
    Case {
        name: "unknown victim lists the accepted values",
        yaml: "groups:\n  - name: a\n    victim: biggest\n",
        errors: &[(
            "groups[0].victim",
            3,
            13,
            "unknown variant `biggest`, expected one of `oldest`, `newest`, `least-busy`",
        )],
    },
    Case {
        name: "unknown metric",
        yaml: "groups:\n  - name: a\n    policy: {metric: disk}\n",
        errors: &[(
            "groups[0].policy.metric",
            3,
            22,
            "unknown variant `disk`, expected one of `cpu`, `mem`, `max`, `rps`",
        )],
    },
    Case {
        name: "a field of another kind under an explicit kind",
        yaml: "groups:\n  - name: a\n    policy:\n      kind: threshold\n      high: 90\n      target: 50\n",
        errors: &[(
            "groups[0].policy.target",
            6,
            7,
            "unknown field `target` for kind `threshold`, expected one of `kind`, `metric`, `aggregation`, `high`, \
             `low`, `min_up`, `min_down` (`target` belongs to kind `target`)",
        )],
    },
    Case {
        name: "a field of another kind under the default kind",
        yaml: "groups:\n  - name: a\n    policy: {high: 90, requests: 10}\n",
        errors: &[(
            "groups[0].policy.requests",
            3,
            24,
            "unknown field `requests` for kind `threshold` (the default), expected one of `kind`, `metric`, \
             `aggregation`, `high`, `low`, `min_up`, `min_down` (`requests` belongs to kind `requests`)",
        )],
    },
    Case {
        name: "the kind may come last: threshold fields under a target",
        yaml: "groups:\n  - name: a\n    policy:\n      high: 80\n      metric: rps\n      target: 50\n      \
               kind: target\n",
        errors: &[(
            "groups[0].policy.high",
            4,
            7,
            "unknown field `high` for kind `target`, expected one of `kind`, `metric`, `target`, `scale_in_samples` \
             (`high` belongs to kind `threshold`)",
        )],
    },
    Case {
        name: "a field two kinds share, under the third",
        yaml: "groups:\n  - name: a\n    policy: {kind: requests, requests: 10, metric: cpu}\n",
        errors: &[(
            "groups[0].policy.metric",
            3,
            44,
            "unknown field `metric` for kind `requests`, expected one of `kind`, `requests`, `window` (`metric` \
             belongs to kind `threshold` or `target`)",
        )],
    },
    Case {
        name: "a field of no kind lists the fields of the kind given",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: rps, target: 50, tagret: 5}\n",
        errors: &[(
            "groups[0].policy.tagret",
            3,
            53,
            "unknown field `tagret`, expected one of `kind`, `metric`, `target`, `scale_in_samples`",
        )],
    },
    Case {
        name: "an alarm policy: a rule naming no declared alarm, adjustments that mean nothing",
        yaml: "groups:\n  - name: a\n    alarms:\n      - {name: cpu-high, kind: external}\n      - {name: cpu-high, kind: external}\n      - {name: 'bad name', kind: external}\n    policy:\n      kind: alarm\n      rules:\n        - {alarm: cpu-hihg, adjustment: 1}\n        - {alarm: cpu-high, adjustment: 0}\n        - {alarm: cpu-high, adjustment_type: exact_capacity, adjustment: -2, min_adjustment_step: 2}\n        - {alarm: cpu-high, adjustment_type: percent_change_in_capacity, adjustment: 5000, cooldown: 2d}\n",
        errors: &[
            ("groups[0].alarms[1].name", 5, 16, "alarm `cpu-high` is declared twice"),
            ("groups[0].alarms[2].name", 6, 16, "invalid alarm name `bad name`: use 1 to 63 of A-Z a-z 0-9 _ - . starting with a letter or digit"),
            ("groups[0].policy.rules[0].alarm", 10, 19, "no alarm `cpu-hihg` in the group's `alarms` (`cpu-high`, `bad name`)"),
            ("groups[0].policy.rules[1].adjustment", 11, 41, "a change of -1000 to 1000 members, not 0 (got 0)"),
            ("groups[0].policy.rules[2].adjustment", 12, 74, "must be between 0 and 1000 (got -2)"),
            ("groups[0].policy.rules[2].min_adjustment_step", 12, 99, "only for `percent_change_in_capacity`"),
            ("groups[0].policy.rules[3].adjustment", 13, 86, "a change of -100 to 1000 percent, not 0 (got 5000)"),
            ("groups[0].policy.rules[3].cooldown", 13, 102, "must be at most 1d (got 2days)"),
        ],
    },
    Case {
        name: "an alarm policy needs rules, an alarm needs a kind",
        yaml: "groups:\n  - name: a\n    alarms: [{name: x}]\n    policy: {kind: alarm}\n",
        errors: &[("groups[0].alarms[0]", 3, 14, "missing field `kind`")],
    },
    Case {
        name: "the prometheus source needs its section, and its fields are checked",
        yaml: "metrics:\n  sources: [local, prometheus]\ngroups: [{name: a}]\n",
        errors: &[("metrics.prometheus", 1, 1, "the `prometheus` source needs this section (`url`, `queries`)")],
    },
    Case {
        name: "a prometheus query with an unknown metric",
        yaml: "metrics:\n  sources: [local, prometheus]\n  prometheus:\n    url: http://127.0.0.1:9090\n    queries: [{metric: cpus, query: up, member_label: instance}]\ngroups: [{name: a}]\n",
        errors: &[(
            "metrics.prometheus.queries[0].metric",
            5,
            24,
            "unknown metric `cpus`: one of cpu, mem, rps, requests, inflight, p50_ms, p95_ms, p99_ms, error_pct",
        )],
    },
    Case {
        name: "unknown policy kind",
        yaml: "groups:\n  - name: a\n    policy: {kind: step}\n",
        errors: &[(
            "groups[0].policy.kind",
            3,
            20,
            "unknown variant `step`, expected one of `threshold`, `target`, `requests`, `alarm`",
        )],
    },
    Case {
        name: "every problem in a policy: a bad value, a misplaced field, then what is missing",
        yaml: "groups:\n  - name: a\n    policy:\n      kind: target\n      high: 80\n      scale_in_samples: many\n",
        errors: &[
            ("groups[0].policy", 3, 5, "missing field `metric`"),
            (
                "groups[0].policy.high",
                5,
                7,
                "unknown field `high` for kind `target`, expected one of `kind`, `metric`, `target`, \
                 `scale_in_samples` (`high` belongs to kind `threshold`)",
            ),
            ("groups[0].policy.scale_in_samples", 6, 25, "invalid type: string \"many\", expected u32"),
        ],
    },
    Case {
        name: "target of zero",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: rps, target: 0}\n",
        errors: &[
            ("groups[0].policy.metric", 3, 36, "metric `rps` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.target", 3, 49, "must be greater than 0 requests per second (got 0)")],
    },
    Case {
        name: "negative cpu target",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: cpu, target: -5}\n",
        errors: &[("groups[0].policy.target", 3, 49, "must be greater than 0 and at most 100 percent (got -5)")],
    },
    Case {
        name: "cpu target above 100",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: cpu, target: 150}\n",
        errors: &[("groups[0].policy.target", 3, 49, "must be greater than 0 and at most 100 percent (got 150)")],
    },
    Case {
        name: "mem target above 100, scale_in_samples 0",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: mem, target: 101, scale_in_samples: 0}\n",
        errors: &[
            ("groups[0].policy.target", 3, 49, "must be greater than 0 and at most 100 percent (got 101)"),
            ("groups[0].policy.scale_in_samples", 3, 72, "must be at least 1 sample"),
        ],
    },
    Case {
        name: "a target of the larger of cpu and mem: no guess at the target's unit",
        yaml: "groups:\n  - name: a\n    policy: {kind: target, metric: max, target: 500}\n",
        errors: &[("groups[0].policy.metric", 3, 36, "a target needs one metric: `cpu`, `mem` or `rps` (not `max`)")],
    },
    Case {
        name: "target missing",
        yaml: "groups:\n  - name: a\n    policy:\n      kind: target\n      metric: rps\n",
        errors: &[("groups[0].policy", 3, 5, "missing field `target`")],
    },
    Case {
        name: "zero requests",
        yaml: "groups:\n  - name: a\n    policy: {kind: requests, requests: 0}\n",
        errors: &[
            ("groups[0].policy.kind", 3, 20, "policy kind `requests` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.requests", 3, 40, "must be at least 1 request")],
    },
    Case {
        name: "negative requests",
        yaml: "groups:\n  - name: a\n    policy: {kind: requests, requests: -1}\n",
        errors: &[("groups[0].policy.requests", 3, 40, "invalid value: integer `-1`, expected u64")],
    },
    Case {
        name: "window of 0s",
        yaml: "groups:\n  - name: a\n    policy: {kind: requests, requests: 10, window: 0s}\n",
        errors: &[
            ("groups[0].policy.kind", 3, 20, "policy kind `requests` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.window", 3, 52, "must be between 1s and 5m (got 0s)")],
    },
    Case {
        name: "window of 10m",
        yaml: "groups:\n  - name: a\n    policy:\n      kind: requests\n      requests: 10\n      window: 10m\n",
        errors: &[
            ("groups[0].policy.kind", 4, 13, "policy kind `requests` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.window", 6, 15, "must be between 1s and 5m (got 10m)")],
    },
    Case {
        name: "window without a unit",
        yaml: "groups:\n  - name: a\n    policy: {kind: requests, requests: 10, window: 60}\n",
        errors: &[("groups[0].policy.window", 3, 52, "invalid duration `60`: a unit is needed, like `60s` or `60ms`")],
    },
    Case {
        name: "rps thresholds: not percent, but never negative",
        yaml: "groups:\n  - name: a\n    policy: {metric: rps, high: 500, low: -1}\n",
        errors: &[
            ("groups[0].policy.metric", 3, 22, "metric `rps` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.low", 3, 43, "must be at least 0 requests per second (got -1)")],
    },
    Case {
        name: "rps thresholds: low below high",
        yaml: "groups:\n  - name: a\n    policy: {metric: rps, high: 500, low: 500}\n",
        errors: &[
            ("groups[0].policy.metric", 3, 22, "metric `rps` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),("groups[0].policy.low", 3, 43, "low (500) must be less than high (500)")],
    },
    Case {
        name: "duplicate group names",
        yaml: "groups:\n  - name: web\n  - name: db\n  - name: web\n",
        errors: &[("groups[2].name", 4, 11, "duplicate group name `web` (first used by groups[0])")],
    },
    Case {
        name: "bad group name",
        yaml: "groups:\n  - name: my web\n",
        errors: &[(
            "groups[0].name",
            2,
            11,
            "invalid group name `my web`: use 1 to 45 of A-Z a-z 0-9 _ - . starting with a letter or digit",
        )],
    },
    Case {
        name: "colliding base names",
        yaml: "groups:\n  - name: a\n  - name: b\n    template:\n      base_name: a\n",
        errors: &[(
            "groups[1].template.base_name",
            5,
            18,
            "`a` is already used by groups[0].template.base_name; member names would collide",
        )],
    },
    Case {
        name: "missing name points at the group",
        yaml: "groups:\n  - mode: scale\n    min: 1\n",
        errors: &[("groups[0]", 2, 5, "missing field `name`")],
    },
    Case {
        name: "a group that is not a mapping",
        yaml: "groups:\n  - name: a\n  - 7\n",
        errors: &[("groups[1]", 3, 5, "invalid type: integer `7`, expected a group mapping (`name`, `mode`, `min`, `max`, ...)")],
    },
    Case {
        name: "no groups",
        yaml: "state_dir: .flotilla\ngroups: []\n",
        errors: &[("groups", 2, 1, "at least one group is required")],
    },
    Case {
        name: "groups missing altogether points at the document",
        yaml: "# a comment first\nstate_dir: .flotilla\n",
        errors: &[("groups", 2, 1, "at least one group is required")],
    },
    Case {
        name: "postgres store",
        yaml: "store:\n  kind: postgres\ngroups:\n  - name: a\n",
        errors: &[("store.kind", 2, 9, "postgres store is not available yet")],
    },
    Case {
        name: "unknown store kind",
        yaml: "store:\n  kind: mysql\ngroups:\n  - name: a\n",
        errors: &[("store.kind", 2, 9, "unknown variant `mysql`, expected `sqlite` or `postgres`")],
    },
    Case {
        name: "unknown provider kind names the known kinds",
        yaml: "provider:\n  kind: vmware\ngroups:\n  - name: a\n",
        errors: &[("provider.kind", 2, 9, "unknown variant `vmware`, expected one of `local`, `libvirt`, `openstack`")],
    },
    Case {
        name: "an openstack group needs its template section",
        yaml: "provider:\n  kind: openstack\ngroups:\n  - name: a\n",
        errors: &[(
            "groups[0].template",
            4,
            5,
            "provider.kind is openstack: the template needs an `openstack` section (image, flavor, network)",
        )],
    },
    Case {
        name: "openstack template fields are checked and named",
        yaml: "provider:\n  kind: openstack\ngroups:\n  - name: a\n    template:\n      openstack: {image: '', flavor: m1.tiny, network: n, service_port: 0}\n",
        errors: &[
            ("groups[0].template.openstack.image", 6, 26, "must not be empty"),
            ("groups[0].template.openstack.service_port", 6, 73, "must be 1-65535"),
        ],
    },
    Case {
        name: "the push source needs its section",
        yaml: "metrics:\n  sources: [local, push]\ngroups:\n  - name: a\n",
        errors: &[("metrics.push", 1, 1, "the `push` source needs this section (at least `listen`)")],
    },
    Case {
        name: "libvirt without its section",
        yaml: "provider:\n  kind: libvirt\ngroups:\n  - name: a\n",
        errors: &[("provider.kind", 2, 9, "libvirt needs a `provider.libvirt` section (at least `hosts` and `ports`)")],
    },
    Case {
        name: "sample window too small",
        yaml: "store: {sample_window: 5}\ngroups:\n  - name: a\n",
        errors: &[("store.sample_window", 1, 24, "must be at least 10 (got 5)")],
    },
    Case {
        name: "duplicate key",
        yaml: "groups:\n  - name: a\n    min: 1\n    min: 2\n",
        errors: &[("groups[0].min", 3, 5, "key `min` appears more than once")],
    },
    Case {
        name: "two documents",
        yaml: "groups:\n  - name: a\n---\ngroups:\n  - name: b\n",
        errors: &[("", 4, 1, "expected one YAML document, found 2")],
    },
    Case {
        name: "empty file",
        yaml: "# nothing here\n",
        errors: &[("", 0, 0, "the file is empty: it needs at least a `groups` list")],
    },
    Case {
        name: "a list instead of a mapping",
        yaml: "- name: a\n",
        errors: &[(
            "",
            1,
            1,
            "invalid type: sequence, expected a mapping with `groups` and optional `state_dir`, `store`, `provider`, `metrics`",
        )],
    },
    Case {
        name: "four errors in four sections",
        yaml: "\
state_dir: .flotilla
store:
  kind: sqlite
  sample_window: lots
provider:
  kind: local
  start_timeout: soon
groups:
  - name: a
    policy:
      high: 50
      low: 60
  - name: b
    mode: scael
",
        errors: &[
            ("store.sample_window", 4, 18, "invalid type: string \"lots\", expected usize"),
            (
                "provider.start_timeout",
                7,
                18,
                "invalid duration `soon`: expected a duration with a unit, like `5s`, `250ms` or `1m`",
            ),
            ("groups[0].policy.low", 12, 12, "low (60) must be less than high (50)"),
            ("groups[1].mode", 14, 11, "unknown variant `scael`, expected `scale` or `handover`"),
        ],
    },
    Case {
        name: "several problems in one group, and in the next",
        yaml: "\
groups:
  - name: a
    colour: red
    min: lots
    policy: {hgih: 1, low: x}
    victim: newest
  - name: b
    max: 0
    template: {vcpus: 65}
",
        errors: &[
            ("groups[0].colour", 3, 5, "unknown field `colour`, expected one of `name`, `mode`, `min`, `max`, `increment`, `interval`, `stale_after`, `cooldown_up`, `cooldown_down`, `drain_timeout`, `victim`, `policy`, `template`, `balancer`, `replacement`, `checkin`, `alarms`"),
            ("groups[0].min", 4, 10, "invalid type: string \"lots\", expected u32"),
            ("groups[0].policy.hgih", 5, 14, "unknown field `hgih`, expected one of `kind`, `metric`, `aggregation`, `high`, `low`, `min_up`, `min_down`"),
            ("groups[0].policy.low", 5, 28, "invalid type: string \"x\", expected f64"),
            ("groups[1].max", 8, 10, "must be at least 1"),
            ("groups[1].template.vcpus", 9, 23, "must be between 1 and 64 (got 65)"),
        ],
    },
    Case {
        name: "balancer problems",
        yaml: "\
groups:
  - name: a
    balancer:
      listen: localhost:80
      selction: round-robin
  - name: b
    balancer:
      listen: 127.0.0.1:8000
      mode: udp
  - name: c
    balancer:
      listen: 127.0.0.1:8000
      retries: 11
      health: {path: healthz, interval: 10ms, rise: 0}
",
        errors: &[
            ("groups[0].balancer.selction", 5, 7, "unknown field `selction`, expected one of `listen`, `mode`, `selection`, `health`, `queue_timeout`, `response_timeout`, `queue_limit`, `retries`, `trust_forwarded`"),
            ("groups[1].balancer.mode", 9, 13, "unknown variant `udp`, expected `http` or `tcp`"),
            ("groups[2].balancer.retries", 13, 16, "must be at most 10, got 11"),
            ("groups[2].balancer.health.path", 14, 22, "`healthz` must start with `/`"),
            ("groups[2].balancer.health.interval", 14, 41, "must be at least 50ms, got 10ms"),
            ("groups[2].balancer.health.rise", 14, 53, "must be between 1 and 100 (got 0)"),
        ],
    },
    Case {
        name: "balancer listeners",
        yaml: "\
groups:
  - name: a
    balancer: {listen: localhost:80}
  - name: b
    balancer: {listen: 127.0.0.1:8000}
  - name: c
    balancer: {listen: 127.0.0.1:8000}
",
        errors: &[
            ("groups[0].balancer.listen", 3, 24, "`localhost:80` is not an IP:port address like 127.0.0.1:8000"),
            ("groups[2].balancer.listen", 7, 24, "127.0.0.1:8000 is already the listener of groups[1]"),
        ],
    },
    Case {
        name: "request policies need a balancer",
        yaml: "\
groups:
  - name: a
    policy: {kind: requests, requests: 10}
  - name: b
    policy: {kind: target, metric: rps, target: 50}
  - name: c
    policy: {kind: target, metric: cpu, target: 50}
",
        errors: &[
            ("groups[0].policy.kind", 3, 20, "policy kind `requests` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),
            ("groups[1].policy.metric", 5, 36, "metric `rps` needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"),
        ],
    },
];

fn describe(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  {e}\n")).collect()
}

#[test]
fn every_case_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for case in CASES {
        let errors = match parse(case.yaml, "t.yaml") {
            Ok(_) => {
                failures.push(format!("{}: parsed without errors", case.name));
                continue;
            }
            Err(errors) => errors.0,
        };
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let want: Vec<String> = case
            .errors
            .iter()
            .map(|&(path, line, col, message)| {
                let place = if line == 0 { "t.yaml".to_string() } else { format!("t.yaml:{line}:{col}") };
                if path.is_empty() {
                    format!("{place}: {message}")
                } else {
                    format!("{place}: {path}: {message}")
                }
            })
            .collect();
        if got != want {
            failures.push(format!(
                "{}:\n got:\n{}want:\n{}",
                case.name,
                describe(&errors),
                want.iter().map(|w| format!("  {w}\n")).collect::<String>()
            ));
            continue;
        }
        // The structured fields agree with the rendering.
        for (e, &(path, line, col, message)) in errors.iter().zip(case.errors) {
            assert_eq!(e.file, "t.yaml");
            assert_eq!(e.path, path, "{}", case.name);
            assert_eq!(e.line, (line != 0).then_some(line), "{}", case.name);
            assert_eq!(e.col, (col != 0).then_some(col), "{}", case.name);
            assert_eq!(e.message, message, "{}", case.name);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn messages_are_lowercase_without_a_trailing_period() {
    for case in CASES {
        for e in parse(case.yaml, "t.yaml").unwrap_err().0 {
            let first = e.message.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{}: {e}", case.name);
            assert!(!e.message.ends_with('.'), "{}: {e}", case.name);
        }
    }
}

#[test]
fn all_errors_print_one_per_line() {
    let case = CASES.iter().find(|c| c.name == "four errors in four sections").unwrap();
    let errors = parse(case.yaml, "t.yaml").unwrap_err();
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().all(|l| l.starts_with("t.yaml:")), "{text}");
    // Usable with `?` in an anyhow context, as the CLI does.
    let err: anyhow::Error = errors.into();
    assert!(err.downcast_ref::<flotilla_config::ConfigErrors>().is_some());
}

#[test]
fn an_unreadable_file_is_one_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    let errors = flotilla_config::load(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let e = &errors.0[0];
    assert_eq!(e.file, path.display().to_string());
    assert_eq!((e.path.as_str(), e.line, e.col), ("", None, None));
    assert!(e.to_string().starts_with(&format!("{}: cannot read the file: ", path.display())), "{e}");
}

#[test]
fn load_labels_errors_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "groups:\n  - name: a\n    min: 0\n").unwrap();
    let errors = flotilla_config::load(&path).unwrap_err();
    assert_eq!(errors.to_string(), format!("{}:3:10: groups[0].min: must be at least 1", path.display()));
}
