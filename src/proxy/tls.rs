//! TLS to `https` origins: system roots or a given CA bundle, SNI from the origin's host,
//! ALPN by the protocol spoken, and an explicit way to skip verification.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// How a proxy checks its origin's certificate, and the one it presents.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamTls {
    /// Trusted roots (PEM); the system's when `None`.
    pub(crate) ca: Option<Arc<[CertificateDer<'static>]>>,
    pub(crate) verify: bool,
    /// The client certificate presented to origins that ask for one (mutual TLS).
    pub(crate) client: Option<Arc<CertifiedKey>>,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        Self {
            ca: None,
            verify: true,
            client: None,
        }
    }
}

/// The system's trusted roots, read once.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(%err, "reading the system's trusted certificates");
            }
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no trusted certificate found on this system: https origins will fail verification");
            }
            Arc::new(store)
        })
        .clone()
}

/// The client configuration for one proxy's origins.
pub(crate) fn client_config(tls: &UpstreamTls, http2: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS)
        });
    let mut config = if tls.verify {
        let roots = match &tls.ca {
            Some(ca) => {
                let mut store = rustls::RootCertStore::empty();
                store.add_parsable_certificates(ca.iter().cloned());
                Arc::new(store)
            }
            None => system_roots(),
        };
        let builder = builder.with_root_certificates(roots);
        match &tls.client {
            Some(key) => {
                builder.with_client_cert_resolver(Arc::new(ClientCertificate(key.clone())))
            }
            None => builder.with_no_client_auth(),
        }
    } else {
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)));
        match &tls.client {
            Some(key) => {
                builder.with_client_cert_resolver(Arc::new(ClientCertificate(key.clone())))
            }
            None => builder.with_no_client_auth(),
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

/// The one client certificate a proxy presents when its origin asks for one.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate (the handshake's signatures are still checked): for origins whose
/// certificate cannot be verified, on explicit request only.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
