//! Metrics pushed by others: an HTTP endpoint that monitoring agents, an OpenStack Aodh alarm
//! webhook or a test harness post to, and a [`MetricSource`](flotilla_model::MetricSource)
//! (`"push"`) that hands the controller what was pushed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_model::SeamError> {
//! use flotilla_metrics_push::{PushSettings, PushSource};
//! let settings = PushSettings::new("127.0.0.1:9464".parse().unwrap(), "a-long-random-shared-token");
//! let (source, addr) = PushSource::start(settings).await?;
//! // hand `source` to the controller as a MetricSource; `source.shutdown().await` at the end
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! **`POST /v1/groups/{group}/samples`**, with `Authorization: Bearer <token>`:
//!
//! ```sh
//! curl -sS -X POST http://127.0.0.1:9464/v1/groups/web/samples \
//!   -H "Authorization: Bearer $FLOTILLA_PUSH_TOKEN" \
//!   -H 'Content-Type: application/json' \
//!   -d '{"samples":[{"member":"VM-test_1","cpu":95.0,"mem":30.5}]}'
//! # => 202 {"accepted":1,"expired":0}
//! ```
//!
//! - `member` is a member's name or its instance id. The other keys are metrics by their
//!   [`Metric::as_str`](flotilla_model::Metric::as_str) names: `cpu`, `mem`, `rps`, `requests`,
//!   `inflight`, `p50_ms`, `p95_ms`, `p99_ms`, `error_pct`. Any subset, at least one.
//! - `at_ms` (optional): when the reading was taken, Unix milliseconds. A value counts from the
//!   earlier of `at_ms` and the moment it arrived, so a reading that was late never looks fresh, and
//!   a pushing host whose clock runs ahead cannot make its values live longer. Readings already
//!   older than `max_age` on arrival are counted as `expired` in the reply and not stored (a
//!   warning asks about the pusher's clock).
//! - `cpu`, `mem` and `error_pct` are percentages, 0 to 100; every value must be a finite number,
//!   not negative. The batch is checked as a whole: any error is a `400` with `{"error": ...}`
//!   naming the place, and nothing of it is stored:
//!
//!   ```text
//!   samples[2].cpu (member `web-3`): 140 is outside 0..=100 (a percentage)
//!   invalid JSON body at `samples[0].member`: invalid type: integer `7`, expected a string at line 1 column 24
//!   invalid JSON body at `samples[1]`: unknown metric `load1`; known keys: member, at_ms, cpu, mem, ...
//!   ```
//! - `202 {"accepted": n, "expired": m}` on success; `401` without the right token; `413` for a
//!   body over 1 MiB; `429` when the bounds below would be exceeded.
//!
//! **`POST /v1/groups/{group}/alarm`**: the body OpenStack Aodh's REST notifier posts when an
//! alarm with `alarm_actions`/`ok_actions` pointing here changes state:
//! `{"alarm_name", "alarm_id", "severity", "previous", "current", "reason", "reason_data"}`, with
//! `current` one of `alarm`, `ok`, `insufficient data`. Aodh sends no credentials of its own, so
//! this endpoint also takes the token as a query parameter:
//!
//! ```sh
//! openstack alarm create --name web-cpu-high --type gnocchi_aggregation_by_resources_threshold \
//!   ... --alarm-action "http://flotilla.lab:9464/v1/groups/web/alarm?token=$FLOTILLA_PUSH_TOKEN"
//! ```
//!
//! That URL then *holds the secret*: Aodh stores it with the alarm (anyone who can show the alarm
//! sees it) and its notifier logs the action URL at INFO. Give the push endpoint its own token, not
//! one reused elsewhere, and prefer a header where the sender can set one.
//!
//! **`GET /healthz`**: `200 {"status":"ok"}`, no token.
//!
//! # What an Aodh alarm does here, and why it is not turned into CPU values
//!
//! An alarm notification is stored per group and alarm id and read with
//! [`PushSource::alarm_state`]; it is **not** mapped to pushed metric values (such as `cpu = 100`
//! for every member on `alarm` and clearing on `ok`). Reasons:
//!
//! - An alarm is already a decision (threshold, evaluation periods, on whatever meter it watches,
//!   not necessarily CPU). Turning it into `cpu = 100` makes a number nobody measured, that the
//!   policy would then threshold and streak-count a second time, that the sample window and
//!   `flotilla status` would show as a real reading, and that `max`-merging with a real source
//!   would let win over real readings.
//! - It misleads other policies: target tracking would read `cpu = 100` as "every member at 100 %"
//!   and jump to `max`; a `mem` or request-count policy would ignore it entirely.
//! - Aodh notifies on transitions only (unless the alarm has `repeat_actions`), so a value would
//!   expire after `max_age` while the alarm is still on; states do not expire here.
//!
//! An alarm belongs in the decision core as its own input (a policy that scales on an external
//! signal); [`AlarmStatus`] carries what that needs (`current`, `previous`, `received_at`, the
//! alarm's `most_recent` statistic).
//!
//! # Freshness and the clock
//!
//! `sample(group, members, now)` returns, for each listed member matched by name or id, the newest
//! value of each metric not older than `max_age` relative to `now`; a member with none is absent
//! (missing data never scales in). The sample's `at` is the oldest of the values it carries.
//! Receive times come from the source's [`Clock`](flotilla_model::Clock) — the wall clock, or the
//! one given to [`PushSource::start_with_clock`], which must be the clock the controller's `now`
//! comes from. Values pushed for names that are not members (yet) are kept until they expire, but
//! only returned for members listed.
//!
//! # Bounds
//!
//! At most [`MAX_MEMBERS_PER_GROUP`] members with live values per group, [`MAX_ENTRIES`] over all
//! groups, [`MAX_GROUPS`] groups and [`MAX_ALARMS_PER_GROUP`] alarms per group; expired values are
//! dropped when room is needed and whenever a group is sampled. Group names in URLs follow the
//! config's rule (1 to 63 of `A-Z a-z 0-9 . _ -`).
//!
//! # Security
//!
//! Plain HTTP: bind to loopback, or keep the listener on a trusted network or behind a TLS proxy
//! (a warning is logged for non-loopback addresses). The token is compared in constant time and
//! never logged; `Debug` of [`PushSettings`] prints it as `***`. Refused requests are logged with
//! the peer address and the reason.

mod parse;
mod server;
mod settings;
mod table;

/// Entry point for the fuzz target `push_body` (`fuzz/`), not an API.
#[doc(hidden)]
pub mod fuzzing {
    use flotilla_model::Timestamp;

    /// Parses `data` as a samples body and as an alarm body; whatever either accepts must hold
    /// only values and names the endpoint would store.
    pub fn bodies(data: &[u8]) {
        if let Ok(samples) = crate::parse::parse_samples(data) {
            for s in samples {
                assert!(crate::parse::check_name(&s.member).is_ok(), "{:?}", s.member);
                assert!(!s.values.is_empty());
                for (m, v) in s.values {
                    assert!(crate::parse::check_value(m, v).is_ok(), "{m:?} {v}");
                }
            }
        }
        if let Ok(alarm) = crate::parse::parse_alarm(data, Timestamp::ZERO) {
            assert!(crate::parse::check_name(&alarm.alarm_id).is_ok(), "{:?}", alarm.alarm_id);
        }
    }
}

pub use parse::{AlarmCondition, AlarmStatus, MAX_NAME_LEN, MAX_REASON_LEN};
pub use server::{PushSource, MAX_ALARM_BODY, MAX_SAMPLES_BODY};
pub use settings::{PushSettings, DEFAULT_MAX_AGE, MIN_TOKEN_LEN};
pub use table::{MAX_ALARMS_PER_GROUP, MAX_ENTRIES, MAX_GROUPS, MAX_MEMBERS_PER_GROUP};
