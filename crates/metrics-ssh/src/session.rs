//! One SSH session: connect (TCP, handshake with the host key checked against the pin store, public
//! key authentication) and run a command on an exec channel.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::{ErrorKind, InstanceId, SeamError};
use russh::client::{self, Handle};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred};

use crate::pins::{fingerprint, PinCheck, PinStore};
use crate::target::SshTarget;

/// Most a command may print (stdout and stderr each); /proc/stat of a 256-CPU guest is ~100 KB.
pub(crate) const OUTPUT_LIMIT: usize = 1 << 20;

/// Why a sample failed: a short, stable category (for logging once per change) and the error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) category: &'static str,
    pub(crate) error: SeamError,
}

impl Failure {
    pub(crate) fn new(category: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure { category, error: SeamError::new(kind, message) }
    }
}

/// The client configuration: keys only, no compression, and `ssh-rsa` (SHA-1) host keys only when
/// allowed.
pub(crate) fn client_config(allow_ssh_rsa: bool) -> client::Config {
    let mut keys = vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
        Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
        Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
    ];
    if allow_ssh_rsa {
        keys.push(Algorithm::Rsa { hash: None });
    }
    client::Config {
        preferred: Preferred { key: Cow::Owned(keys), ..Preferred::default() },
        // The session lives between samples; a dead one is noticed by the next command.
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    }
}

/// What the handler learnt about the server's host key.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    HostKeyChanged { expected: String, presented: String },
    PinStore(String),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

/// Checks the host key against the instance's pin (russh calls this after it verified the server's
/// signature with that key, so the server does hold it). A first key is pinned.
pub(crate) struct PinningHandler {
    instance: InstanceId,
    pins: Arc<PinStore>,
}

impl client::Handler for PinningHandler {
    type Error = HandlerError;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // A host certificate pins the host key it certifies (so a re-issued certificate still matches).
        let key = &server.public_key();
        match self.pins.check(&self.instance, key).map_err(HandlerError::PinStore)? {
            PinCheck::Matches => Ok(true),
            PinCheck::Pinned => {
                tracing::info!(
                    member = %self.instance,
                    fingerprint = %fingerprint(key),
                    pin = %self.pins.path(&self.instance).display(),
                    "ssh: pinned the host key on first use"
                );
                Ok(true)
            }
            PinCheck::Changed { expected, presented } => Err(HandlerError::HostKeyChanged { expected, presented }),
        }
    }
}

pub(crate) type Session = Handle<PinningHandler>;

/// Everything a connection needs.
pub(crate) struct ConnectParams<'a> {
    pub(crate) config: &'a Arc<client::Config>,
    pub(crate) pins: &'a Arc<PinStore>,
    pub(crate) key: &'a Arc<PrivateKey>,
    pub(crate) user: &'a str,
    pub(crate) allow_ssh_rsa: bool,
    pub(crate) timeout: Duration,
}

/// Opens and authenticates a session, all within `p.timeout`. `on_tcp` runs once the TCP
/// connection is up (the sampler counts connections there).
pub(crate) async fn connect(
    p: &ConnectParams<'_>,
    instance: &InstanceId,
    target: &SshTarget,
    on_tcp: impl FnOnce(),
) -> Result<Session, Failure> {
    let work = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| {
            Failure::new("connect", ErrorKind::Transient, format!("instance `{instance}`: cannot reach {target}: {e}"))
        })?;
        on_tcp();
        let _ = stream.set_nodelay(true);
        let handler = PinningHandler { instance: instance.clone(), pins: p.pins.clone() };
        let mut session = client::connect_stream(p.config.clone(), stream, handler)
            .await
            .map_err(|e| handshake_failure(p, instance, target, e))?;
        authenticate(p, &mut session, instance, target).await?;
        Ok(session)
    };
    match tokio::time::timeout(p.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            "timeout",
            ErrorKind::Transient,
            format!(
                "instance `{instance}`: connecting to {target} (TCP, SSH handshake, login) took longer than {}",
                humantime::format_duration(p.timeout)
            ),
        )),
    }
}

fn handshake_failure(p: &ConnectParams<'_>, instance: &InstanceId, target: &SshTarget, e: HandlerError) -> Failure {
    match e {
        HandlerError::HostKeyChanged { expected, presented } => Failure::new(
            "host-key-changed",
            ErrorKind::Conflict,
            format!(
                "instance `{instance}`: SSH host key at {target} does not match its pin: expected {expected}, \
                 presented {presented} (pin {}); not sampled. If the member was rebuilt under the same id, \
                 forget its pin",
                p.pins.path(instance).display()
            ),
        ),
        HandlerError::PinStore(msg) => {
            Failure::new("pin-store", ErrorKind::Invalid, format!("instance `{instance}`: {msg}"))
        }
        HandlerError::Ssh(russh::Error::NoCommonAlgo { kind, ours, theirs }) => {
            let hint = if !p.allow_ssh_rsa && theirs.iter().any(|a| a == "ssh-rsa") {
                "; the server offers `ssh-rsa` (SHA-1), which is only used with `allow_ssh_rsa: true`"
            } else {
                ""
            };
            Failure::new(
                "handshake",
                ErrorKind::Invalid,
                format!("instance `{instance}`: no common {kind:?} algorithm with {target} (ours {ours:?}, theirs {theirs:?}){hint}"),
            )
        }
        HandlerError::Ssh(e) => Failure::new(
            "handshake",
            ErrorKind::Transient,
            format!("instance `{instance}`: SSH handshake with {target} failed: {e}"),
        ),
    }
}

async fn authenticate(
    p: &ConnectParams<'_>,
    session: &mut Session,
    instance: &InstanceId,
    target: &SshTarget,
) -> Result<(), Failure> {
    let ssh_err = |e: russh::Error| {
        Failure::new("auth", ErrorKind::Transient, format!("instance `{instance}`: SSH login at {target} failed: {e}"))
    };
    // RSA identities sign with SHA-2 when the server says it can (RFC 8332/8308); SHA-1 `ssh-rsa`
    // only when allowed. Other key types have one signature algorithm (and skip the up-to-1 s wait
    // for the server's extension info).
    let hash = if p.key.algorithm().is_rsa() {
        match session.best_supported_rsa_hash().await.map_err(ssh_err)? {
            Some(Some(h)) => Some(h),
            Some(None) if !p.allow_ssh_rsa => {
                return Err(Failure::new(
                    "auth",
                    ErrorKind::Invalid,
                    format!(
                        "instance `{instance}`: {target} accepts only `ssh-rsa` (SHA-1) signatures for the RSA \
                         identity; set `allow_ssh_rsa: true` or use an ed25519 key"
                    ),
                ))
            }
            Some(None) => None,
            // No extension info: an old server. SHA-1 when allowed, else try SHA-256.
            None if p.allow_ssh_rsa => None,
            None => Some(HashAlg::Sha256),
        }
    } else {
        None
    };
    let result = session
        .authenticate_publickey(p.user, PrivateKeyWithHashAlg::new(p.key.clone(), hash))
        .await
        .map_err(ssh_err)?;
    if result.success() {
        Ok(())
    } else {
        Err(Failure::new(
            "auth",
            ErrorKind::Invalid,
            format!(
                "instance `{instance}`: {target} refused public key login as `{}` with key {} ({})",
                p.user,
                fingerprint(p.key.public_key()),
                p.key.algorithm()
            ),
        ))
    }
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// `None` if the server sent no exit status (killed by a signal, or a server that does not say).
    pub exit_status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` on a new exec channel of `session` and reads until the channel closes. Not
/// bounded in time here: the caller wraps it in its command timeout.
pub(crate) async fn exec(session: &Session, command: &str) -> Result<CommandOutput, ExecError> {
    let mut channel = session.channel_open_session().await.map_err(ExecError::Session)?;
    channel.exec(true, command).await.map_err(ExecError::Session)?;
    let mut out = CommandOutput { exit_status: None, stdout: Vec::new(), stderr: Vec::new() };
    let mut refused = false;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => push_limited(&mut out.stdout, &data)?,
            ChannelMsg::ExtendedData { data, .. } => push_limited(&mut out.stderr, &data)?,
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::Failure => refused = true,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if refused {
        return Err(ExecError::Refused);
    }
    Ok(out)
}

fn push_limited(buf: &mut Vec<u8>, data: &[u8]) -> Result<(), ExecError> {
    if buf.len() + data.len() > OUTPUT_LIMIT {
        return Err(ExecError::TooMuchOutput);
    }
    buf.extend_from_slice(data);
    Ok(())
}

/// Why a command did not run to the end.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// The session is unusable (closed by the server, the connection dropped): reconnect.
    Session(russh::Error),
    /// The server refused the exec request.
    Refused,
    TooMuchOutput,
}

/// Closes a session without waiting for it: a polite disconnect, bounded, in the background. Needs
/// a Tokio runtime; without one the session is simply dropped (which also ends it).
pub(crate) fn close(session: Session) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                session.disconnect(Disconnect::ByApplication, "flotilla: member no longer sampled", "en"),
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_rsa_host_keys_only_when_allowed() {
        let sha1 = Algorithm::Rsa { hash: None };
        let strict = client_config(false);
        assert!(!strict.preferred.key.contains(&sha1));
        assert!(strict.preferred.key.contains(&Algorithm::Ed25519));
        assert!(strict.preferred.key.contains(&Algorithm::Rsa { hash: Some(HashAlg::Sha256) }));
        assert!(client_config(true).preferred.key.contains(&sha1));
        assert_eq!(strict.inactivity_timeout, None, "sessions are kept between samples");
    }
}
