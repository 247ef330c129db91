//! Kong's `certificates` and `snis`: the certificates the TLS listener presents, by server
//! name (feature `tls`; without it a file with certificates is refused).

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};

use super::{Config, ServiceRef};

/// A certificate chain and its private key (PEM), with the names it is presented for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Kong's entity id (top-level `snis` name their certificate by it).
    #[serde(default)]
    pub id: Option<String>,
    /// The PEM chain, leaf first.
    pub cert: String,
    /// The PEM private key of the leaf.
    pub key: String,
    /// Kong's alternate pair (an ECDSA and an RSA certificate together): refused unless
    /// empty.
    #[serde(default)]
    pub cert_alt: Option<String>,
    /// The alternate pair's key: refused unless empty.
    #[serde(default)]
    pub key_alt: Option<String>,
    /// The server names it is presented for: `api.example.com`, `*.example.com`,
    /// `example.*`; as names or as decK's `{name: ...}` objects.
    #[serde(default)]
    pub snis: Vec<SniName>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
}

/// A server name under its certificate: `api.example.com` or `{name: api.example.com}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniName(pub String);

/// A CA certificate that services name in their `ca_certificates` to verify their
/// `https`/`grpcs` upstreams with (instead of the system's roots).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCertificate {
    /// Kong's entity id (services name it by this).
    #[serde(default)]
    pub id: Option<String>,
    /// The PEM certificate (a bundle of several is accepted).
    pub cert: String,
    /// Kong's digest of `cert`: accepted, not checked.
    #[serde(default)]
    pub cert_digest: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
}

/// A top-level server name, naming its certificate by id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    /// Kong's entity id.
    #[serde(default)]
    pub id: Option<String>,
    /// The name: exact, or with one `*` as its first or last label.
    pub name: String,
    /// The certificate, by id (`certificate: <id>` or `{id: <id>}`).
    pub certificate: ServiceRef,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time (Kong metadata).
    #[serde(default)]
    pub created_at: Option<u64>,
    /// Update time (Kong metadata).
    #[serde(default)]
    pub updated_at: Option<u64>,
}

impl<'de> Deserialize<'de> for SniName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = SniName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server name, or {name: ...}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SniName, E> {
                Ok(SniName(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SniName, A::Error> {
                let mut name = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "id" | "tags" | "created_at" | "updated_at" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["name", "id", "tags", "created_at", "updated_at"],
                            ));
                        }
                    }
                }
                name.map(SniName)
                    .ok_or_else(|| de::Error::missing_field("name"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A field path and what is wrong there.
type Invalid = (String, String);

impl Config {
    /// Each certificate with every name it is presented for (its own `snis`, then the
    /// top-level `snis` naming it), and the field path of each.
    pub(crate) fn certificate_names(&self) -> Vec<(&Certificate, Vec<(String, String)>)> {
        self.certificates
            .iter()
            .enumerate()
            .map(|(i, certificate)| {
                let mut names: Vec<(String, String)> = certificate
                    .snis
                    .iter()
                    .enumerate()
                    .map(|(j, n)| (format!("certificates[{i}].snis[{j}]"), n.0.clone()))
                    .collect();
                for (j, sni) in self.snis.iter().enumerate() {
                    if certificate.id.as_deref() == Some(sni.certificate.0.as_str()) {
                        names.push((format!("snis[{j}].name"), sni.name.clone()));
                    }
                }
                (certificate, names)
            })
            .collect()
    }

    /// Certificates and names checked: each pair parses and matches (feature `tls`), each
    /// name is well formed and used once, each top-level name's certificate exists.
    pub(crate) fn check_certificates(&self) -> Result<(), Invalid> {
        let sections = [
            ("certificates", self.certificates.is_empty()),
            ("snis", self.snis.is_empty()),
            ("ca_certificates", self.ca_certificates.is_empty()),
        ];
        if !cfg!(feature = "tls")
            && let Some((section, _)) = sections.iter().find(|(_, empty)| !empty)
        {
            let section = *section;
            return Err((
                section.into(),
                "certificates need the `tls` feature (cargo run --release --features tls --example gateway)".into(),
            ));
        }
        let mut ids = HashSet::new();
        for (i, certificate) in self.certificates.iter().enumerate() {
            let at = format!("certificates[{i}]");
            if let Some(id) = &certificate.id
                && !ids.insert(id.as_str())
            {
                return Err((
                    format!("{at}.id"),
                    format!("a second certificate has id {id:?}"),
                ));
            }
            for (field, value) in [
                ("cert_alt", &certificate.cert_alt),
                ("key_alt", &certificate.key_alt),
            ] {
                if value.as_deref().is_some_and(|v| !v.is_empty()) {
                    return Err((
                        format!("{at}.{field}"),
                        "alternate certificates are not supported yet: configure one pair".into(),
                    ));
                }
            }
        }
        for (j, sni) in self.snis.iter().enumerate() {
            if !ids.contains(sni.certificate.0.as_str()) {
                return Err((
                    format!("snis[{j}].certificate"),
                    format!("no certificate has id {:?}", sni.certificate.0),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (_, names) in self.certificate_names() {
            for (at, name) in names {
                check_name(&name).map_err(|message| (at.clone(), message))?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err((at, format!("a second certificate is named {name:?}")));
                }
            }
        }
        #[cfg(feature = "tls")]
        self.server_certificates()?;
        self.check_ca_certificates()
    }

    /// CA certificates parse, their ids are unique, services name existing ones.
    fn check_ca_certificates(&self) -> Result<(), Invalid> {
        let mut ids = HashSet::new();
        for (i, ca) in self.ca_certificates.iter().enumerate() {
            let at = format!("ca_certificates[{i}]");
            if let Some(id) = &ca.id
                && !ids.insert(id.as_str())
            {
                return Err((
                    format!("{at}.id"),
                    format!("a second CA certificate has id {id:?}"),
                ));
            }
            #[cfg(feature = "tls")]
            crate::pem::certificates(ca.cert.as_bytes())
                .map_err(|err| (format!("{at}.cert"), err.message))?;
        }
        for (i, service) in self.services.iter().enumerate() {
            if let Some(reference) = &service.client_certificate
                && self.client_certificate(service).is_none()
            {
                return Err((
                    format!("services[{i}].client_certificate"),
                    format!("no certificate has id {:?}", reference.0),
                ));
            }
            for (j, id) in service.ca_certificates.iter().flatten().enumerate() {
                if !ids.contains(id.as_str()) {
                    return Err((
                        format!("services[{i}].ca_certificates[{j}]"),
                        format!("no CA certificate has id {id:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The certificate `service` presents to its upstream (`client_certificate`).
    pub(crate) fn client_certificate(&self, service: &super::Service) -> Option<&Certificate> {
        let reference = service.client_certificate.as_ref()?;
        self.certificates
            .iter()
            .find(|c| c.id.as_deref() == Some(reference.0.as_str()))
    }

    /// The PEM text of the CA certificates `service` names, one bundle; `None` when it names
    /// none (the system's roots verify it).
    pub(crate) fn ca_bundle(&self, service: &super::Service) -> Option<String> {
        let ids = service
            .ca_certificates
            .as_ref()
            .filter(|ids| !ids.is_empty())?;
        let mut bundle = String::new();
        for id in ids {
            if let Some(ca) = self
                .ca_certificates
                .iter()
                .find(|ca| ca.id.as_deref() == Some(id.as_str()))
            {
                bundle.push_str(ca.cert.trim_end());
                bundle.push('\n');
            }
        }
        Some(bundle)
    }

    /// The certificates for the TLS listener, parsed and checked.
    #[cfg(feature = "tls")]
    pub(crate) fn server_certificates(&self) -> Result<Vec<crate::server::Certificate>, Invalid> {
        self.certificate_names()
            .into_iter()
            .enumerate()
            .map(|(i, (certificate, names))| {
                crate::server::Certificate::from_pem_fields(
                    certificate.cert.as_bytes(),
                    certificate.key.as_bytes(),
                    names.into_iter().map(|(_, name)| name),
                )
                .map_err(|(field, message)| (format!("certificates[{i}].{field}"), message))
            })
            .collect()
    }
}

/// Kong's server names: a host as routes name them (exact, or one `*` as the whole first or
/// last label), without a port.
fn check_name(name: &str) -> Result<(), String> {
    if name.contains(':') {
        return Err(format!(
            "invalid server name {name:?}: a server name has no port"
        ));
    }
    crate::router::check_host(name).map_err(|err| err.to_string())
}
