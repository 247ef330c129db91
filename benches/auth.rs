//! Authentication cost per request: JWT verification (HS256, RS256, ES256) with and without
//! the verified-token cache, and an API-key lookup among 100 000 keys.
//!
//! `cargo bench --bench auth`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Request;
use http::request::Parts;
use jsonwebtoken::{EncodingKey, Header, encode};
use tower_gateway::auth::jwt::Algorithm;
use tower_gateway::auth::{ApiKey, Authenticator, Consumer, Consumers, Jwt, JwtCredential};

const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa-public.pem");
const EC256_PRIVATE: &str = include_str!("../tests/keys/ec256-private.pem");
const EC256_PUBLIC: &str = include_str!("../tests/keys/ec256-public.pem");

fn parts(name: &str, value: &str) -> Parts {
    Request::get("/orders")
        .header(name, value)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn jwt(c: &mut Criterion) {
    let consumers = Consumers::new();
    consumers.insert(Consumer::new("c-1").username("test-user"));
    let credentials = [
        JwtCredential::hmac("hs", "a-secret-of-some-length", Algorithm::HS256).unwrap(),
        JwtCredential::public_key("rs", RSA_PUBLIC, Algorithm::RS256).unwrap(),
        JwtCredential::public_key("es", EC256_PUBLIC, Algorithm::ES256).unwrap(),
    ];
    for credential in credentials {
        consumers.add_jwt("test-user", credential).unwrap();
    }
    let claims =
        |iss: &str| serde_json::json!({ "iss": iss, "exp": 4_000_000_000u64, "user_id": "42" });
    let tokens = [
        (
            "HS256",
            encode(
                &Header::new(Algorithm::HS256),
                &claims("hs"),
                &EncodingKey::from_secret(b"a-secret-of-some-length"),
            )
            .unwrap(),
        ),
        (
            "RS256",
            encode(
                &Header::new(Algorithm::RS256),
                &claims("rs"),
                &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
        (
            "ES256",
            encode(
                &Header::new(Algorithm::ES256),
                &claims("es"),
                &EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("auth/jwt");
    for (alg, token) in &tokens {
        let header = format!("Bearer {token}");
        for (mode, authenticator) in [
            ("verify", Jwt::new(consumers.clone()).without_cache()),
            ("cached", Jwt::new(consumers.clone())),
        ] {
            group.bench_function(BenchmarkId::new(mode, alg), |b| {
                b.iter(|| {
                    let mut p = parts("authorization", &header);
                    authenticator.authenticate(&mut p).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn api_key(c: &mut Criterion) {
    let consumers = Consumers::new();
    consumers
        .edit(|edit| {
            edit.insert(Consumer::new("c-1").username("test-user"));
            for i in 0..100_000 {
                edit.add_api_key("test-user", &format!("key-{i:08}"), None)?;
            }
            Ok::<_, tower_gateway::auth::CredentialError>(())
        })
        .unwrap();
    let key_auth = ApiKey::new(consumers);
    c.bench_function("auth/api-key/100k-keys", |b| {
        b.iter(|| {
            let mut p = parts("apikey", "key-00031337");
            key_auth.authenticate(&mut p).unwrap()
        })
    });
}

criterion_group!(benches, jwt, api_key);
criterion_main!(benches);
