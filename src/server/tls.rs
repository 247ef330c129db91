//! TLS termination with rustls: certificates chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::pem::{TlsError, certified_key};

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
    named: Option<SniCertificates>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.certificates.len())
            .field("named", &self.named)
            .finish()
    }
}

/// A certificate chain with its private key, checked to match, and the server names it is
/// presented for (Kong's `certificates` with their `snis`).
#[derive(Clone)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A chain and its key, as PEM text, presented for `names`: exact names
    /// (`api.example.com`) or Kong's wildcards, one `*` as the first label
    /// (`*.example.com`, which does not match `example.com`) or the last (`example.*`).
    pub fn from_pem(
        chain: &[u8],
        key: &[u8],
        names: impl IntoIterator<Item = String>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            key: certified_key(chain, key, "<pem>", "<pem>")?,
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        })
    }

    /// [`from_pem`](Self::from_pem) for a configuration's `cert` and `key` fields; the
    /// error names the field.
    #[cfg(feature = "config")]
    pub(crate) fn from_pem_fields(
        chain: &[u8],
        key: &[u8],
        names: impl IntoIterator<Item = String>,
    ) -> Result<Self, (String, String)> {
        let key = certified_key(chain, key, "cert", "key").map_err(|e| (e.file, e.message))?;
        Ok(Self {
            key,
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        })
    }

    /// The names it is presented for.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Certificates chosen by the client's SNI among their names, replaceable while the
/// listener serves (the gateway's `certificates` follow its configuration). Cheap to clone:
/// clones share the set.
#[derive(Clone, Default)]
pub struct SniCertificates {
    current: Arc<ArcSwap<Vec<Certificate>>>,
}

impl std::fmt::Debug for SniCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.current.load().iter()).finish()
    }
}

impl SniCertificates {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the set: handshakes from now on choose among `certificates`.
    pub fn replace(&self, certificates: Vec<Certificate>) {
        self.current.store(Arc::new(certificates));
    }

    /// How many certificates the set holds.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    /// Kong's choice for `host`: the certificate with that exact name, else one whose
    /// wildcard name covers it (a leading `*` before a trailing one).
    fn choose(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let named = |matches: &dyn Fn(&str) -> bool| {
            set.iter()
                .find(|c| c.names.iter().any(|n| matches(n)))
                .map(|c| c.key.clone())
        };
        named(&|n| n == host)
            .or_else(|| {
                named(&|n| {
                    n.strip_prefix("*.").is_some_and(|suffix| {
                        host.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                    })
                })
            })
            .or_else(|| {
                named(&|n| {
                    n.strip_suffix(".*").is_some_and(|prefix| {
                        host.rsplit_once('.')
                            .is_some_and(|(rest, _)| rest == prefix)
                    })
                })
            })
    }

    fn first(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().first().map(|c| c.key.clone())
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

    /// Also presents the certificates of `set` for the names they list, before the ones
    /// added with [`certificate_pem`](Self::certificate_pem) (Kong's `snis` before its
    /// default certificate). With a set, the listener may start without a certificate of its
    /// own; while no certificate fits a handshake, the listener's first is presented, else the
    /// set's first, and with none at all the handshake fails.
    pub fn sni_certificates(mut self, set: SniCertificates) -> Self {
        self.named = Some(set);
        self
    }

    fn certificate_pem_named(
        mut self,
        chain: &[u8],
        key: &[u8],
        chain_file: &str,
        key_file: &str,
    ) -> Result<Self, TlsError> {
        self.certificates
            .push(certified_key(chain, key, chain_file, key_file)?);
        Ok(self)
    }

    /// The rustls configuration: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        if self.certificates.is_empty() && self.named.is_none() {
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
            .with_cert_resolver(Arc::new(BySni {
                named: self.named.clone(),
                own: self.certificates.clone(),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Picks a certificate of the named set by the client's SNI, else one of the listener's own
/// whose names cover it, else the listener's first, else the set's first.
#[derive(Debug)]
struct BySni {
    named: Option<SniCertificates>,
    own: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wanted = hello.server_name().map(str::to_ascii_lowercase);
        if let (Some(named), Some(name)) = (&self.named, wanted.as_deref())
            && let Some(key) = named.choose(name)
        {
            return Some(key);
        }
        let matching = wanted
            .as_deref()
            .and_then(|name| self.own.iter().find(|key| covers(key, name)));
        matching
            .or_else(|| self.own.first())
            .cloned()
            .or_else(|| self.named.as_ref().and_then(SniCertificates::first))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[&str]) -> Certificate {
        let generated = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).unwrap();
        Certificate::from_pem(
            generated.cert.pem().as_bytes(),
            generated.signing_key.serialize_pem().as_bytes(),
            names.iter().map(|n| (*n).to_owned()),
        )
        .unwrap()
    }

    #[test]
    fn names_are_chosen_exact_first_then_leading_then_trailing_wildcards() {
        let exact = certificate(&["api.example.com"]);
        let leading = certificate(&["*.example.com"]);
        let trailing = certificate(&["api.*"]);
        let set = SniCertificates::new();
        set.replace(vec![trailing.clone(), leading.clone(), exact.clone()]);
        let chosen = |host: &str| set.choose(host);
        let is = |key: Option<Arc<CertifiedKey>>, c: &Certificate| {
            key.is_some_and(|k| Arc::ptr_eq(&k, &c.key))
        };
        assert!(is(chosen("api.example.com"), &exact));
        assert!(is(chosen("www.example.com"), &leading));
        assert!(is(chosen("api.org"), &trailing));
        assert!(chosen("api.example.org").is_none(), "the last label only");
        assert!(
            chosen("example.com").is_none(),
            "*.example.com needs a label more"
        );
        assert!(chosen("a.b.example.com").is_none(), "one label only");
        assert!(chosen("other.org").is_none());
    }
}
