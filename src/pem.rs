//! Certificates and keys read from PEM text, shared by the server (its certificates) and the
//! proxy (upstream CAs and client certificates).

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

/// A chain and its key, parsed and checked to match.
pub(crate) fn certified_key(
    chain: &[u8],
    key: &[u8],
    chain_file: &str,
    key_file: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
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
    Ok(Arc::new(certified))
}

/// The certificates of a PEM bundle.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError {
            file: "<ca>".into(),
            message: format!("not a PEM certificate bundle: {err}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError {
            file: "<ca>".into(),
            message: "no certificate in the bundle".into(),
        });
    }
    Ok(certs)
}
