//! TLS for a listener: a certificate chain and its private key from PEM files, checked at load
//! (so a bad file is a config error naming the field, not a failure at the first client), served
//! with rustls (TLS 1.2 and 1.3, ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
pub use tokio_rustls::TlsAcceptor;

/// A loaded certificate and key, ready to accept.
#[derive(Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

/// Which file was wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    Cert(String),
    Key(String),
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key: PKCS#8, PKCS#1 or SEC1)
    /// and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| TlsError::Cert(format!("cannot read {}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Cert(format!("{}: not a PEM certificate chain: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(TlsError::Cert(format!(
                "{}: holds no certificate (`-----BEGIN CERTIFICATE-----`)",
                cert.display()
            )));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Key(format!("{}: no PEM private key in it ({e})", key.display())))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Cert(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| TlsError::Key(format!("{} does not fit the certificate: {e}", key.display())))?;
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_matching_pair_loads_and_each_wrong_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        assert!(Tls::load(&cert, &key).is_ok());
        assert!(matches!(Tls::load(&cert, &other_key), Err(TlsError::Key(m)) if m.contains("does not fit")));
        assert!(matches!(Tls::load(&key, &key), Err(TlsError::Cert(m)) if m.contains("holds no certificate")));
        assert!(matches!(Tls::load(&cert, &cert), Err(TlsError::Key(m)) if m.contains("no PEM private key")));
        let missing = dir.path().join("nope.crt");
        assert!(matches!(Tls::load(&missing, &key), Err(TlsError::Cert(m)) if m.contains("cannot read")));
    }
}
