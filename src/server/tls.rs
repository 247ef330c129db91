//! TLS termination with rustls: certificates chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN.

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TlsError {
    /// The file (or `<pem>` for text given directly).
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// What a TLS listener presents: certificates (each with its chain and key), the one matching
/// the client's SNI, else the first; ALPN `h2` then `http/1.1`.
///
/// ```no_run
/// use tower_gateway::server::{Server, TlsConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::new()
///     .certificate_files("certs/api.pem", "certs/api-key.pem")?
///     .certificate_files("certs/admin.pem", "certs/admin-key.pem")?;
/// let server = Server::bind("0.0.0.0:8443".parse()?).tls(tls);
/// # drop(server); Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    certificates: Vec<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl TlsConfig {
    /// No certificate yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a certificate chain and its private key, both PEM files.
    pub fn certificate_files(self, chain: &str, key: &str) -> Result<Self, TlsError> {
        let read = |file: &str| {
            std::fs::read(file).map_err(|err| TlsError {
                file: file.to_owned(),
                message: format!("cannot read: {err}"),
            })
        };
        let (chain_pem, key_pem) = (read(chain)?, read(key)?);
        self.certificate_pem_named(&chain_pem, &key_pem, chain, key)
    }

    /// Adds a certificate chain and its private key given as PEM text.
    pub fn certificate_pem(self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        self.certificate_pem_named(chain, key, "<pem>", "<pem>")
    }

    fn certificate_pem_named(
        mut self,
        chain: &[u8],
        key: &[u8],
        chain_file: &str,
        key_file: &str,
    ) -> Result<Self, TlsError> {
        let invalid = |file: &str, message: String| TlsError {
            file: file.to_owned(),
            message,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|err| invalid(chain_file, format!("not a PEM certificate chain: {err}")))?;
        if certs.is_empty() {
            return Err(invalid(chain_file, "no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|err| invalid(key_file, format!("not a PEM private key: {err}")))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|err| invalid(key_file, format!("unusable private key: {err}")))?;
        let certified = CertifiedKey::new(certs, signing);
        certified.keys_match().map_err(|err| {
            invalid(
                key_file,
                format!("the key does not match the certificate: {err}"),
            )
        })?;
        self.certificates.push(Arc::new(certified));
        Ok(self)
    }

    /// The rustls configuration: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        if self.certificates.is_empty() {
            return Err(TlsError {
                file: "<tls>".into(),
                message: "a TLS listener needs at least one certificate".into(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError {
                file: "<tls>".into(),
                message: err.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(self.certificates.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Picks the certificate whose names include the client's SNI, else the first.
#[derive(Debug)]
struct BySni(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wanted = hello.server_name().map(str::to_ascii_lowercase);
        let matching = wanted
            .as_deref()
            .and_then(|name| self.0.iter().find(|key| covers(key, name)));
        matching.or_else(|| self.0.first()).cloned()
    }
}

/// Whether the leaf certificate is valid for `host` (its subject alternative names, wildcards
/// included, as webpki checks them for clients).
fn covers(key: &CertifiedKey, host: &str) -> bool {
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
        .is_ok()
}
