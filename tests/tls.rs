#![cfg(all(feature = "tls", feature = "config"))]
//! TLS termination over real sockets: the certificate the client's SNI asks for, HTTP/2 or
//! HTTP/1.1 as ALPN decides, and `https` as the forwarded protocol.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tower_gateway::config::{Config, Gateway, Settings};
use tower_gateway::server::{Server, TlsConfig};

/// A self-signed certificate for `name`: (certificate PEM, key PEM, certificate DER).
fn certificate(name: &str) -> (String, String, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (
        generated.cert.pem(),
        generated.signing_key.serialize_pem(),
        generated.cert.der().clone(),
    )
}

/// A TLS gateway in front of `up`, presenting `certificates`.
async fn tls_gateway(up: SocketAddr, certificates: &[(String, String)]) -> SocketAddr {
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let mut tls = TlsConfig::new();
    for (cert, key) in certificates {
        tls = tls
            .certificate_pem(cert.as_bytes(), key.as_bytes())
            .unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .tls(tls)
            .serve(gateway.router()),
    );
    addr
}

/// A TLS client trusting `roots`, offering `alpn`, asking for `name`.
async fn connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    name: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http2_and_http1_by_alpn_with_the_certificate_sni_asks_for() {
    let (up, mut seen) = ok_upstream().await;
    let (api_cert, api_key, api_der) = certificate("api.test");
    let (admin_cert, admin_key, admin_der) = certificate("admin.test");
    let gw = tls_gateway(up, &[(api_cert, api_key), (admin_cert, admin_key)]).await;
    let roots = [api_der.clone(), admin_der.clone()];

    // HTTP/2 over TLS, negotiated by ALPN.
    let stream = connect(gw, &roots, "api.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], api_der);
    let mut h2 = support::h2_client(stream).await;
    let req = http::Request::get("https://api.test/over-h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    let upstream = seen.recv().await.unwrap();
    assert_eq!(upstream.headers["x-forwarded-proto"], "https");

    // HTTP/1.1 over TLS, and the other certificate for the other name.
    let stream = connect(gw, &roots, "admin.test", &[b"http/1.1"]).await;
    assert_eq!(
        stream.get_ref().1.peer_certificates().unwrap()[0],
        admin_der
    );
    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/over-h1")
        .header("host", "admin.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = h1.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);

    // A name no certificate has: the first one is presented (and a client checking the name
    // refuses it).
    let store = {
        let mut store = rustls::RootCertStore::empty();
        store.add(api_der.clone()).unwrap();
        store
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(gw).await.unwrap();
    let refused = connector
        .connect(ServerName::try_from("other.test").unwrap(), tcp)
        .await;
    assert!(refused.is_err());
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let (cert, _, _) = certificate("a.test");
    let (_, other_key, _) = certificate("b.test");
    let err = TlsConfig::new()
        .certificate_pem(cert.as_bytes(), other_key.as_bytes())
        .unwrap_err();
    assert!(err.message.contains("does not match"), "{err}");
    let err = TlsConfig::new()
        .certificate_pem(b"not pem", b"not pem")
        .unwrap_err();
    assert!(err.message.contains("certificate"), "{err}");
}

/// An HTTPS upstream on 127.0.0.1 with a self-signed certificate for that address; answers
/// "secure". Returns its address and the certificate's PEM.
async fn https_upstream() -> (SocketAddr, String) {
    tls_upstream(None, "secure").await
}

/// An HTTPS upstream answering `answer`, asking for a client certificate and accepting only
/// `client` (DER) when one is given. Returns its address and its certificate's PEM.
async fn tls_upstream(
    client: Option<CertificateDer<'static>>,
    answer: &'static str,
) -> (SocketAddr, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client {
        Some(client) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(answer.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, generated.cert.pem())
}

#[tokio::test]
async fn https_origins_are_verified_against_the_given_ca_and_refused_otherwise() {
    use tower_gateway::proxy::{ProxyConfig, ReverseProxy};
    let (up, ca) = https_upstream().await;
    let origin = format!("https://{up}");
    let proxy = |config: ProxyConfig| async move {
        let (gw, stop) = serve(ReverseProxy::<hyper::body::Incoming>::new(config)).await;
        std::mem::forget(stop);
        gw
    };
    // Trusting the upstream's certificate: served.
    let trusted = ProxyConfig::new(&origin)
        .unwrap()
        .tls_ca_pem(ca.as_bytes())
        .unwrap();
    let gw = proxy(trusted).await;
    let res = send(gw, get("/")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "secure");
    // The system's roots do not know it: 502, nothing sent in clear.
    let gw = proxy(ProxyConfig::new(&origin).unwrap()).await;
    assert_eq!(send(gw, get("/")).await.status(), 502);
    // Verification explicitly off: served (with a warning in the log).
    let gw = proxy(ProxyConfig::new(&origin).unwrap().tls_verify(false)).await;
    assert_eq!(send(gw, get("/")).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_the_tls_handshake_is_dropped_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key, _) = certificate("slow.test");
    let tls = TlsConfig::new()
        .certificate_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    tokio::spawn(
        Server::from_listener(listener)
            .header_read_timeout(std::time::Duration::from_secs(5))
            .tls(tls)
            .serve(service),
    );
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // Half a ClientHello's record header, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(3600), tcp.read(&mut buf))
        .await
        .expect("the connection is still open an hour later");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(5) && waited < std::time::Duration::from_secs(6),
        "{waited:?}"
    );
}

/// Asserts that `yaml` is refused at `path` with `message` in the error.
fn refused(yaml: &str, path: &str, message: &str) {
    let err = Config::from_yaml(yaml).unwrap_err();
    assert_eq!(err.path(), Some(path), "{err}");
    assert!(err.to_string().contains(message), "{err}");
}

/// A self-signed certificate for several names: (certificate PEM, key PEM, certificate DER).
fn certificate_for(names: &[&str]) -> (String, String, CertificateDer<'static>) {
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    (
        generated.cert.pem(),
        generated.signing_key.serialize_pem(),
        generated.cert.der().clone(),
    )
}

/// Indents PEM text as a YAML block scalar at `indent` spaces.
fn block(pem: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    pem.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A TLS listener over `gateway`, presenting the certificates of `set` only.
async fn tls_listener(
    router: tower_gateway::config::LiveRouter,
    set: tower_gateway::server::SniCertificates,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::from_listener(listener)
            .tls(TlsConfig::new().sni_certificates(set))
            .serve(router),
    );
    addr
}

/// Whether a client trusting only `root` completes a handshake for `name` and gets a 200.
async fn served_as(addr: SocketAddr, root: &CertificateDer<'static>, name: &str) -> bool {
    let mut store = rustls::RootCertStore::empty();
    store.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let Ok(stream) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
    else {
        return false;
    };
    let mut h2 = h2_client(stream).await;
    let req = http::Request::get(format!("https://{name}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    h2.send_request(req).await.unwrap().status() == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_of_the_file_are_presented_for_their_server_names() {
    let (up, _seen) = ok_upstream().await;
    let (a_cert, a_key, a_der) = certificate_for(&["a.test", "*.wild.test"]);
    let (b_cert, b_key, b_der) = certificate_for(&["b.test"]);
    let yaml = format!(
        "_format_version: \"3.0\"
services:
  - name: s
    url: http://{up}
    routes:
      - paths: [/]
certificates:
  - id: 5b2b4d4e-8b5c-4d43-9d2e-0c7d1f1f1a01
    cert: |
{}    key: |
{}  - cert: |
{}    key: |
{}    snis:
      - name: a.test
      - \"*.wild.test\"
snis:
  - name: b.test
    certificate: {{ id: 5b2b4d4e-8b5c-4d43-9d2e-0c7d1f1f1a01 }}
",
        block(&b_cert, 6),
        block(&b_key, 6),
        block(&a_cert, 6),
        block(&a_key, 6),
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let names: Vec<&[String]> = gateway.certificates().iter().map(|c| c.names()).collect();
    assert_eq!(
        names,
        [
            &["b.test".to_owned()][..],
            &["a.test".to_owned(), "*.wild.test".to_owned()][..]
        ]
    );
    let set = tower_gateway::server::SniCertificates::new();
    set.replace(gateway.certificates().to_vec());
    let live = tower_gateway::config::LiveGateway::new(gateway);
    let addr = tls_listener(live.service(), set).await;
    assert!(served_as(addr, &a_der, "a.test").await);
    assert!(
        served_as(addr, &a_der, "x.wild.test").await,
        "the wildcard name"
    );
    assert!(served_as(addr, &b_der, "b.test").await, "the top-level sni");
    assert!(
        !served_as(addr, &b_der, "a.test").await,
        "a.test is not b's"
    );
}

#[test]
fn certificate_errors_name_the_field() {
    let (a_cert, a_key, _) = certificate_for(&["a.test"]);
    let (_, other_key, _) = certificate_for(&["other.test"]);
    let doc = |certificate: &str, rest: &str| {
        format!("_format_version: \"3.0\"\ncertificates:\n{certificate}{rest}")
    };
    let entry = |cert: &str, key: &str, extra: &str| {
        format!(
            "  - cert: |\n{}    key: |\n{}{extra}",
            block(cert, 6),
            block(key, 6)
        )
    };
    let cases = [
        (
            doc(&entry("not pem", &a_key, ""), ""),
            "certificates[0].cert",
            "certificate",
        ),
        (
            doc(&entry(&a_cert, &other_key, ""), ""),
            "certificates[0].key",
            "does not match",
        ),
        (
            doc(&entry(&a_cert, &a_key, "    snis: [a.test, a.test]\n"), ""),
            "certificates[0].snis[1]",
            "a second certificate",
        ),
        (
            doc(&entry(&a_cert, &a_key, "    snis: [\"a.*.test\"]\n"), ""),
            "certificates[0].snis[0]",
            "first or last label",
        ),
        (
            doc(
                &entry(&a_cert, &a_key, ""),
                "snis:\n  - name: b.test\n    certificate: nope\n",
            ),
            "snis[0].certificate",
            "no certificate",
        ),
        (
            doc(&entry(&a_cert, &a_key, "    cert_alt: x\n"), ""),
            "certificates[0].cert_alt",
            "not supported yet",
        ),
    ];
    for (yaml, path, message) in cases {
        refused(&yaml, path, message);
    }
}

#[cfg(feature = "admin")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_added_through_the_admin_api_are_presented_at_once() {
    use tower_gateway::admin::AdminApi;
    let (up, _seen) = ok_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - paths: [/]\n"
    );
    let set = tower_gateway::server::SniCertificates::new();
    let followed = set.clone();
    let admin = AdminApi::from_yaml(&yaml, Settings::default())
        .unwrap()
        .on_swap(move |next| followed.replace(next.certificates().to_vec()));
    let (api, stop) = serve(admin.clone()).await;
    std::mem::forget(stop);
    let addr = tls_listener(admin.live().service(), set).await;
    let (cert, key, der) = certificate_for(&["new.test", "other.test"]);
    assert!(
        !served_as(addr, &der, "new.test").await,
        "no certificate yet"
    );

    let post = |path: &str, body: serde_json::Value| {
        http::Request::post(path)
            .header("host", "admin.test")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let res = send(
        api,
        post(
            "/certificates",
            serde_json::json!({ "cert": cert, "key": key, "snis": ["new.test"] }),
        ),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(created["snis"], serde_json::json!(["new.test"]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(served_as(addr, &der, "new.test").await);

    // Kong's nested form adds a name; a name taken is refused.
    let res = send(
        api,
        post(
            &format!("/certificates/{id}/snis"),
            serde_json::json!({ "name": "other.test" }),
        ),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert!(served_as(addr, &der, "other.test").await);
    // As Kong: the certificate's names are SNI entities, listed both ways.
    let (_, snis) = support::kong::call(api, "GET", "/snis", "").await;
    let names: Vec<&str> = snis["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["new.test", "other.test"]);
    let (_, shown) = support::kong::call(api, "GET", &format!("/certificates/{id}"), "").await;
    assert_eq!(shown["snis"], serde_json::json!(["new.test", "other.test"]));
    // PATCH with `snis` makes them the certificate's names.
    let (status, patched) = support::kong::call(
        api,
        "PATCH",
        &format!("/certificates/{id}"),
        "snis[]=new.test",
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["snis"], serde_json::json!(["new.test"]));
    let res = send(
        api,
        post(
            "/snis",
            serde_json::json!({ "name": "new.test", "certificate": { "id": id } }),
        ),
    )
    .await;
    assert_eq!(res.status(), 409, "a name is used once");
    let res = send(
        api,
        post(
            "/certificates",
            serde_json::json!({ "cert": "x", "key": "y" }),
        ),
    )
    .await;
    assert_eq!(res.status(), 400);

    // Deleting the certificate takes its names with it.
    let (status, _) = support::kong::call(api, "DELETE", &format!("/certificates/{id}"), "").await;
    assert_eq!(status, 204);
    let (_, snis) = support::kong::call(api, "GET", "/snis", "").await;
    assert_eq!(snis["data"], serde_json::json!([]));
    assert!(!served_as(addr, &der, "new.test").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_verify_their_https_upstream_with_the_ca_certificates_they_name() {
    let (up, ca) = https_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"
ca_certificates:
  - id: 0a6f7b7e-3c1d-4b9a-8e5f-2d4c6b8a9e01
    cert: |
{}services:
  - name: trusted
    url: https://{up}
    ca_certificates: [0a6f7b7e-3c1d-4b9a-8e5f-2d4c6b8a9e01]
    routes:
      - paths: [/trusted]
  - name: system-roots
    url: https://{up}
    routes:
      - paths: [/system]
",
        block(&ca, 6)
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, stop) = serve(gateway.router()).await;
    std::mem::forget(stop);
    let res = send(gw, get("/trusted")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "secure");
    // The system's roots do not know the self-signed upstream.
    assert_eq!(send(gw, get("/system")).await.status(), 502);

    let bad = [
        (
            yaml.replace(
                "ca_certificates: [0a6f7b7e-3c1d-4b9a-8e5f-2d4c6b8a9e01]",
                "ca_certificates: [nope]",
            ),
            "services[0].ca_certificates[0]",
            "no CA certificate",
        ),
        (
            "_format_version: \"3.0\"\nca_certificates:\n  - cert: not pem\n".to_owned(),
            "ca_certificates[0].cert",
            "certificate",
        ),
    ];
    for (yaml, path, message) in bad {
        refused(&yaml, path, message);
    }
}

#[cfg(feature = "admin")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_added_through_the_admin_api_verifies_a_service_s_upstream() {
    use tower_gateway::admin::AdminApi;
    let (up, ca) = https_upstream().await;
    let admin = AdminApi::from_yaml(
        &format!(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: https://{up}\n    routes:\n      - paths: [/]\n"
        ),
        Settings::default(),
    )
    .unwrap();
    let (api, stop) = serve(admin.clone()).await;
    std::mem::forget(stop);
    let (proxy, stop) = serve(admin.live().service()).await;
    std::mem::forget(stop);
    assert_eq!(send(proxy, get("/")).await.status(), 502);
    let req = http::Request::post("/ca_certificates")
        .header("host", "admin.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::json!({ "cert": ca }).to_string(),
        )))
        .unwrap();
    let res = send(api, req).await;
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = support::kong::call(
        api,
        "PATCH",
        "/services/s",
        &format!("ca_certificates[]={id}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let res = send(proxy, get("/")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "secure");
    // A CA certificate in use cannot go.
    let (status, _) =
        support::kong::call(api, "DELETE", &format!("/ca_certificates/{id}"), "").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_presents_its_client_certificate_to_an_upstream_that_asks() {
    let (client_cert, client_key, client_der) = certificate_for(&["gateway.client"]);
    let (up, server_ca) = tls_upstream(Some(client_der), "mutual").await;
    let yaml = format!(
        "_format_version: \"3.0\"
certificates:
  - id: 7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b01
    cert: |
{}    key: |
{}ca_certificates:
  - id: 7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b02
    cert: |
{}services:
  - name: mutual
    url: https://{up}
    client_certificate: {{ id: 7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b01 }}
    ca_certificates: [7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b02]
    routes:
      - paths: [/mutual]
  - name: anonymous
    url: https://{up}
    ca_certificates: [7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b02]
    routes:
      - paths: [/anonymous]
",
        block(&client_cert, 6),
        block(&client_key, 6),
        block(&server_ca, 6),
    );
    let gateway =
        Gateway::from_config(&Config::from_yaml(&yaml).unwrap(), &Settings::default()).unwrap();
    let (gw, stop) = serve(gateway.router()).await;
    std::mem::forget(stop);
    let res = send(gw, get("/mutual")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "mutual");
    // Without a client certificate the upstream refuses the handshake.
    assert_eq!(send(gw, get("/anonymous")).await.status(), 502);

    let unknown = yaml.replace(
        "client_certificate: { id: 7d1c0b1e-5a2f-4e3b-9c4d-1f2e3d4c5b01 }",
        "client_certificate: { id: nope }",
    );
    let err = Config::from_yaml(&unknown).unwrap_err();
    assert_eq!(err.path(), Some("services[0].client_certificate"), "{err}");
}
