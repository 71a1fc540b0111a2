//! [`SshSettings`]: how the sampler logs in, and their checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::PrivateKey;
use serde::Deserialize;

/// The SSH port used when a member has neither an `ssh_address` tag with a port nor a configured
/// [`SshSettings::port`].
pub const DEFAULT_SSH_PORT: u16 = 22;

/// The default for both [`SshSettings::connect_timeout`] and [`SshSettings::command_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the sampler reaches members. Deserialized from the config (`user`, `identity_file`, `port`,
/// `allow_ssh_rsa`, `connect_timeout`, `command_timeout`; durations as humantime strings like `5s`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// The login user. Default `root`.
    #[serde(default = "default_user")]
    pub user: String,
    /// The private key (ed25519, ECDSA or RSA; OpenSSH or PEM format, not encrypted).
    pub identity_file: PathBuf,
    /// Used when a member has no `ssh_address` tag: the host part of its `address` and this port
    /// (default 22). Also the port for an `ssh_address` tag without one.
    #[serde(default)]
    pub port: Option<u16>,
    /// Allows the legacy `ssh-rsa` (SHA-1) algorithm, both for the server's host key and for signing
    /// with an RSA identity. Off by default; old CirrOS images need it. A warning is logged when on.
    #[serde(default)]
    pub allow_ssh_rsa: bool,
    /// Bound on TCP connect + SSH handshake + authentication.
    #[serde(default = "default_timeout", deserialize_with = "flotilla_duration::deserialize")]
    pub connect_timeout: Duration,
    /// Bound on one metric command (open channel, run, read everything).
    #[serde(default = "default_timeout", deserialize_with = "flotilla_duration::deserialize")]
    pub command_timeout: Duration,
}

fn default_user() -> String {
    "root".to_string()
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl SshSettings {
    /// Settings with every default and the given identity file.
    pub fn new(identity_file: impl Into<PathBuf>) -> Self {
        SshSettings {
            user: default_user(),
            identity_file: identity_file.into(),
            port: None,
            allow_ssh_rsa: false,
            connect_timeout: DEFAULT_TIMEOUT,
            command_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The port for members without a port of their own.
    pub fn default_port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_SSH_PORT)
    }

    /// Every problem, as (field, message). Empty when the settings can be used. Reads (but never
    /// prints) the identity file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |field: &str, msg: String| errors.push((field.to_string(), msg));
        if self.user.trim().is_empty() {
            err("user", "must not be empty".into());
        } else if self.user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            err("user", format!("`{}` contains whitespace or control characters", self.user.escape_default()));
        }
        if let Err(msg) = load_identity(&self.identity_file) {
            err("identity_file", msg);
        }
        if self.port == Some(0) {
            err("port", "must be between 1 and 65535".into());
        }
        if self.connect_timeout.is_zero() {
            err("connect_timeout", "must be more than 0 (for example `5s`)".into());
        }
        if self.command_timeout.is_zero() {
            err("command_timeout", "must be more than 0 (for example `5s`)".into());
        }
        errors
    }
}

/// Loads the private key, or says in one line what is wrong with the file. The message names the
/// path and the problem, never the key's contents.
pub(crate) fn load_identity(path: &Path) -> Result<PrivateKey, String> {
    if path.as_os_str().is_empty() {
        return Err("must name a private key file".into());
    }
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{shown}` does not exist"),
        _ => format!("`{shown}` cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    let text = std::fs::read(path).map_err(|e| format!("`{shown}` cannot be read: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| format!("`{shown}` is not a private key (not text)"))?;
    let trimmed = text.trim_start();
    if ["ssh-", "ecdsa-", "sk-"].iter().any(|p| trimmed.starts_with(p)) {
        return Err(format!("`{shown}` is a public key: name the private key (the file without `.pub`)"));
    }
    if !trimmed.starts_with("-----BEGIN ") && !trimmed.starts_with("PuTTY-User-Key-File-") {
        return Err(format!("`{shown}` is not a private key (expected an OpenSSH or PEM private key)"));
    }
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            Err(format!("`{shown}` is encrypted with a passphrase; use a key without one"))
        }
        // Most parse errors from ssh-key say "encrypted" for a passphrase-protected OpenSSH key.
        Err(e) if e.to_string().to_ascii_lowercase().contains("encrypt") => {
            Err(format!("`{shown}` is encrypted with a passphrase; use a key without one"))
        }
        Err(e) => Err(format!("`{shown}` is not a usable private key: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_humantime_durations() {
        let s: SshSettings = serde_json::from_str(r#"{"identity_file": "/k"}"#).unwrap();
        assert_eq!(s, SshSettings::new("/k"));
        assert_eq!(s.user, "root");
        assert_eq!(s.default_port(), 22);
        assert!(!s.allow_ssh_rsa);
        assert_eq!((s.connect_timeout, s.command_timeout), (Duration::from_secs(5), Duration::from_secs(5)));

        let s: SshSettings = serde_json::from_str(
            r#"{"user": "cirros", "identity_file": "/k", "port": 2222, "allow_ssh_rsa": true,
                "connect_timeout": "1500ms", "command_timeout": "1m"}"#,
        )
        .unwrap();
        assert_eq!(s.user, "cirros");
        assert_eq!(s.default_port(), 2222);
        assert!(s.allow_ssh_rsa);
        assert_eq!(s.connect_timeout, Duration::from_millis(1500));
        assert_eq!(s.command_timeout, Duration::from_secs(60));
    }

    #[test]
    fn unknown_fields_missing_identity_and_unitless_durations_are_errors() {
        let e = serde_json::from_str::<SshSettings>(r#"{"identity_file": "/k", "passwd": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("passwd"), "{e}");
        let e = serde_json::from_str::<SshSettings>(r#"{"user": "root"}"#).unwrap_err();
        assert!(e.to_string().contains("identity_file"), "{e}");
        let e = serde_json::from_str::<SshSettings>(r#"{"identity_file": "/k", "connect_timeout": 5}"#).unwrap_err();
        assert!(e.to_string().contains("a unit is needed"), "{e}");
        let e =
            serde_json::from_str::<SshSettings>(r#"{"identity_file": "/k", "command_timeout": "soon"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid duration `soon`"), "{e}");
    }

    #[test]
    fn validate_names_each_bad_field() {
        let mut s = SshSettings::new("/nonexistent/flotilla-test-key");
        s.user = " ".into();
        s.port = Some(0);
        s.connect_timeout = Duration::ZERO;
        s.command_timeout = Duration::ZERO;
        let fields: Vec<String> = s.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["user", "identity_file", "port", "connect_timeout", "command_timeout"]);
    }
}
