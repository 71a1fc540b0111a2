//! [`PushSettings`]: where the push endpoint listens, its token, how long a pushed value counts.

use std::net::SocketAddr;
use std::time::Duration;

/// The default for [`PushSettings::max_age`].
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

/// The shortest token [`PushSettings::validate`] accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// The push endpoint's settings. Built, not deserialized: the config's `metrics.push` section names
/// where the token comes from (`token_env`, `token_file`), never the token itself, so the one schema
/// is the config's and this is what it becomes once the token is read.
///
/// `Debug` prints the token as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Address and port of the HTTP listener, e.g. `127.0.0.1:9464` (no default: write it down).
    /// Anything but loopback is allowed; the listener speaks plain HTTP, so the token then crosses
    /// the network in clear text (a warning is logged at start).
    pub listen: SocketAddr,
    /// The shared secret every push presents (`Authorization: Bearer <token>`; the alarm endpoint
    /// also takes `?token=`). At least 16 printable ASCII characters, no spaces.
    pub token: String,
    /// A pushed value counts for this long after it was taken (`at_ms`) or received, whichever is
    /// earlier; then `sample` no longer returns it and it is dropped. Default `30s`.
    pub max_age: Duration,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSettings")
            .field("listen", &self.listen)
            .field("token", &"***")
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl PushSettings {
    /// Settings with the default `max_age`.
    pub fn new(listen: SocketAddr, token: impl Into<String>) -> Self {
        PushSettings { listen, token: token.into(), max_age: DEFAULT_MAX_AGE }
    }

    /// Every problem, as (field, message), fields relative to the `metrics.push` mapping. Empty
    /// when the settings can be used. Messages never contain the token.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |field: &str, msg: String| errors.push((field.to_string(), msg));
        if self.listen.port() == 0 {
            err(
                "listen",
                format!("`{}`: port 0 picks a random port the pushing systems cannot know; name a port", self.listen),
            );
        }
        if self.token.chars().count() < MIN_TOKEN_LEN {
            err(
                "token",
                format!(
                    "is {} characters long; use at least {MIN_TOKEN_LEN} (for example `openssl rand -hex 24`)",
                    self.token.chars().count()
                ),
            );
        } else if !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            err("token", "must be printable ASCII without spaces (it travels in an HTTP header or URL)".into());
        }
        if self.max_age.is_zero() {
            err("max_age", "must be more than 0 (for example `30s`)".into());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn validate_names_each_bad_field_and_never_the_token() {
        let mut s = PushSettings::new("0.0.0.0:0".parse().unwrap(), "short-secret");
        s.max_age = Duration::ZERO;
        let problems = s.validate();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["listen", "token", "max_age"]);
        assert!(problems.iter().all(|(_, m)| !m.contains("short-secret")), "{problems:?}");

        let s = PushSettings::new("0.0.0.0:9464".parse().unwrap(), "with a space in it, long enough");
        let fields: Vec<String> = s.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["token"]);
    }

    #[test]
    fn debug_hides_the_token() {
        let s = PushSettings::new("127.0.0.1:9464".parse().unwrap(), TOKEN);
        let shown = format!("{s:?}");
        assert!(!shown.contains(TOKEN) && shown.contains("***"), "{shown}");
    }
}
