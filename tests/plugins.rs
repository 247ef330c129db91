#![cfg(feature = "admin")]
//! Application plugins: a tower Layer with a typed configuration, registered by name and
//! configured like the built-in plugins, from the declarative file and through the Admin
//! API, over real sockets.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::kong::call;
use support::{get, ok_upstream, send, serve, text};
use tower::{Layer, Service};
use tower_gateway::admin::AdminApi;
use tower_gateway::body::ResponseBody;
use tower_gateway::config::{Config, FieldError, Gateway, Settings};
use tower_gateway::plugin::{
    Definition, PluginContext, PluginRequest, Registry, RegistryError, Schema, UpstreamResponse,
};

/// `counter`: counts a route's requests, answers 429 past `limit`, and tells the client the
/// count and the consumer it saw in `header` and `header-consumer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CounterConfig {
    #[serde(default = "thousand")]
    limit: u64,
    #[serde(default = "default_header")]
    header: String,
}

fn thousand() -> u64 {
    1000
}

fn default_header() -> String {
    "x-counter".into()
}

impl Schema for CounterConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.limit == 0 {
            return Err(FieldError::at("limit", "limit must be at least 1"));
        }
        if HeaderName::try_from(&self.header).is_err() {
            return Err(FieldError::at("header", "not a header name"));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct CounterLayer {
    limit: u64,
    header: HeaderName,
    seen: HeaderName,
    count: Arc<AtomicU64>,
}

impl CounterLayer {
    fn new(config: &CounterConfig, _: &PluginContext<'_>) -> Result<Self, String> {
        let header = HeaderName::try_from(&config.header).map_err(|e| e.to_string())?;
        let seen = HeaderName::try_from(format!("{}-consumer", config.header))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            limit: config.limit,
            header,
            seen,
            count: Arc::new(AtomicU64::new(0)),
        })
    }
}

impl<S> Layer<S> for CounterLayer {
    type Service = Counter<S>;

    fn layer(&self, inner: S) -> Counter<S> {
        Counter {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Counter<S> {
    inner: S,
    layer: CounterLayer,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<UpstreamResponse, Infallible>> + Send>>;

impl<S> Service<PluginRequest> for Counter<S>
where
    S: Service<PluginRequest, Response = UpstreamResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = UpstreamResponse;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: PluginRequest) -> BoxFuture {
        let n = self.layer.count.fetch_add(1, Ordering::SeqCst) + 1;
        let consumer = req
            .extensions()
            .get::<tower_gateway::auth::Consumer>()
            .and_then(|c| c.username.as_deref().map(str::to_owned))
            .unwrap_or_else(|| "-".into());
        let layer = self.layer.clone();
        let mark = move |mut res: UpstreamResponse| {
            let headers = res.headers_mut();
            headers.insert(layer.header.clone(), HeaderValue::from(n));
            if let Ok(value) = HeaderValue::try_from(consumer) {
                headers.insert(layer.seen.clone(), value);
            }
            res
        };
        if n > self.layer.limit {
            let mut res =
                UpstreamResponse::new(ResponseBody::full(r#"{"message":"counter limit"}"#));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return Box::pin(async move { Ok(mark(res)) });
        }
        let called = self.inner.call(req);
        Box::pin(async move { Ok(mark(called.await?)) })
    }
}

/// `refusing`: a plugin whose constructor refuses every configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

impl Schema for Nothing {}

fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry
        .register(Definition::new("counter", 1000, CounterLayer::new))
        .unwrap()
        .register(Definition::new("early-counter", 2000, CounterLayer::new))
        .unwrap()
        .register(Definition::new("refusing", 10, |_: &Nothing, ctx| {
            Err::<CounterLayer, _>(format!("nothing works on {}", ctx.route()))
        }))
        .unwrap();
    registry
}

/// The gateway of `yaml` with the test plugins, its proxy and Admin API on loopback.
async fn gateway(yaml: &str) -> (SocketAddr, SocketAddr, AdminApi) {
    let admin = AdminApi::from_text_with(yaml, "<test>", Settings::default(), &registry()).unwrap();
    let (proxy, stop) = serve(admin.live().service()).await;
    std::mem::forget(stop);
    let (api, stop) = serve(admin.clone()).await;
    std::mem::forget(stop);
    (proxy, api, admin)
}

fn with_key(path: &str, key: &str) -> Request<Full<Bytes>> {
    let mut req = get(path);
    req.headers_mut()
        .insert("apikey", HeaderValue::from_str(key).unwrap());
    req
}

fn header(res: &http::Response<hyper::body::Incoming>, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_custom_plugin_from_the_declarative_file_applies_by_kong_s_precedence() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, _api, _admin) = gateway(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{up}
    routes:
      - name: limited
        paths: [/limited]
        plugins:
          - name: counter
            config: {{ limit: 2, header: x-route-count }}
      - name: open
        paths: [/open]
plugins:
  - name: counter
"#
    ))
    .await;
    for n in 1..=2 {
        let res = send(proxy, get("/limited")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-route-count"), Some(n.to_string()));
        assert_eq!(
            header(&res, "x-counter"),
            None,
            "the route's instance replaces the global one"
        );
    }
    let res = send(proxy, get("/limited")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "x-route-count").as_deref(), Some("3"));
    assert_eq!(text(res).await, r#"{"message":"counter limit"}"#);
    // The other route has the global instance, with its defaults.
    let res = send(proxy, get("/open")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-counter").as_deref(), Some("1"));
    assert_eq!(text(res).await, "ok");
}

#[tokio::test]
async fn custom_plugin_errors_in_the_file_name_the_field_and_its_line() {
    let registry = registry();
    let cases = [
        (
            "      limit: 0\n",
            "plugins[0].config.limit",
            "limit must be at least 1",
            5,
        ),
        (
            "      limit: many\n",
            "plugins[0].config.limit",
            "invalid type",
            5,
        ),
        (
            "      header: x-h\n      colour: blue\n",
            "plugins[0].config.colour",
            "unknown field `colour`",
            6,
        ),
    ];
    for (config, path, message, line) in cases {
        let yaml =
            format!("_format_version: \"3.0\"\nplugins:\n  - name: counter\n    config:\n{config}");
        let err = Config::from_yaml_with(&yaml, &registry).unwrap_err();
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
    }
    // Without the registry, the name is unknown and the error says how to add it.
    let err =
        Config::from_yaml("_format_version: \"3.0\"\nplugins:\n  - name: counter\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("\"counter\" is not supported here"),
        "{err}"
    );
    assert!(err.to_string().contains("Registry::register"), "{err}");
}

#[tokio::test]
async fn a_layer_constructor_s_refusal_refuses_the_configuration_at_the_instance() {
    let yaml = "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - name: r\n        paths: [/]\n    plugins:\n      - name: refusing\n";
    let config = Config::from_yaml_with(yaml, &registry()).unwrap();
    let err = Gateway::from_config(&config, &Settings::default()).unwrap_err();
    assert_eq!(err.path(), Some("services[0].plugins[0].config"), "{err}");
    assert!(err.to_string().contains("nothing works on r"), "{err}");
}

#[test]
fn names_are_unique_and_well_formed() {
    let mut registry = registry();
    let again = registry.register(Definition::new("counter", 1, CounterLayer::new));
    assert_eq!(again.err(), Some(RegistryError::Taken("counter".into())));
    let builtin = registry.register(Definition::new("key-auth", 1, CounterLayer::new));
    assert_eq!(builtin.err(), Some(RegistryError::Taken("key-auth".into())));
    let bad = registry.register(Definition::new("My Plugin", 1, CounterLayer::new));
    assert!(matches!(bad, Err(RegistryError::Name(_))));
    let names: Vec<&str> = registry.names().collect();
    assert!(
        names.contains(&"counter") && names.contains(&"rate-limiting"),
        "{names:?}"
    );
}

#[tokio::test]
async fn the_admin_api_configures_a_custom_plugin_with_defaults_typed_fields_and_errors() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, api, _admin) = gateway("_format_version: \"3.0\"\n").await;
    let (status, _) = call(api, "POST", "/services", &format!("name=s&url=http://{up}")).await;
    assert_eq!(status, 201);
    let (status, _) = call(api, "POST", "/services/s/routes", "name=r&paths[]=/a").await;
    assert_eq!(status, 201);

    // Kong's form, as for a built-in plugin: strings typed, defaults filled in.
    let (status, plugin) = call(
        api,
        "POST",
        "/services/s/plugins",
        "name=counter&config.limit=2",
    )
    .await;
    assert_eq!(status, 201, "{plugin}");
    assert_eq!(
        plugin["config"],
        json!({ "limit": 2, "header": "x-counter" })
    );
    assert_eq!(plugin["service"]["id"].as_str().map(str::len), Some(36));
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(send(proxy, get("/a")).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429]);

    // The same errors as the built-in plugins get.
    let bad = [
        (
            "name=counter&config.limit=0",
            "limit",
            "limit must be at least 1",
        ),
        ("name=counter&config.limit=lots", "limit", "invalid type"),
    ];
    for (form, field, message) in bad {
        let (status, body) = call(api, "POST", "/routes/r/plugins", form).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["name"], "schema violation", "{body}");
        let at = body["fields"]["config"][field].as_str().unwrap_or_default();
        assert!(at.contains(message), "{body}");
    }
    let (status, body) = call(
        api,
        "POST",
        "/routes/r/plugins",
        "name=counter&config.colour=blue",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let unknown = body["fields"]["config"]["colour"]
        .as_str()
        .unwrap_or_default();
    assert!(unknown.contains("unknown field"), "{body}");
    let (status, body) = call(api, "POST", "/routes/r/plugins", "name=nope").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");

    // A built-in plugin shows Kong's fields and defaults, typed.
    let (status, limit) = call(
        api,
        "POST",
        "/routes/r/plugins",
        "name=rate-limiting&config.minute=50",
    )
    .await;
    assert_eq!(status, 201, "{limit}");
    assert_eq!(limit["config"]["minute"], 50);
    assert_eq!(limit["config"]["limit_by"], "consumer");
    assert_eq!(limit["config"]["policy"], "local");
    assert!(limit["config"].get("nodelay").is_none(), "{limit}");

    // Checked without being created.
    let (status, body) = call(
        api,
        "POST",
        "/schemas/plugins/validate",
        "name=counter&config.limit=0",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["config"]["limit"].is_string(), "{body}");
    let (status, body) = call(
        api,
        "POST",
        "/schemas/plugins/validate",
        "name=counter&config.limit=7",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "schema validation successful");
    let (_, list) = call(api, "GET", "/plugins", "").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "{list}");

    // A plugin named by its `instance_name`, unique as Kong keeps it.
    let (status, named) = call(
        api,
        "POST",
        "/routes/r/plugins",
        "name=counter&instance_name=route-counter&config.limit=9",
    )
    .await;
    assert_eq!(status, 201, "{named}");
    let (status, found) = call(api, "GET", "/plugins/route-counter", "").await;
    assert_eq!(status, 200);
    assert_eq!(found["id"], named["id"]);
    let (status, _) = call(
        api,
        "POST",
        "/plugins",
        "name=counter&instance_name=route-counter",
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(api, "DELETE", "/plugins/route-counter", "").await;
    assert_eq!(status, 204);

    // Kong's schema shape with the defaults (what decK fills defaults from).
    let (status, schema) = call(api, "GET", "/schemas/plugins/counter", "").await;
    assert_eq!(status, 200);
    let config = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("config"))
        .expect("a config record");
    assert_eq!(config["type"], "record");
    assert!(
        config["fields"]
            .as_array()
            .unwrap()
            .contains(&json!({ "limit": { "type": "integer", "default": 1000 } })),
        "{schema}"
    );
    let (_, limits) = call(api, "GET", "/schemas/plugins/rate-limiting", "").await;
    assert!(
        limits
            .to_string()
            .contains(r#"{"limit_by":{"default":"consumer","type":"string"}}"#),
        "{limits}"
    );
    let (status, _) = call(api, "GET", "/schemas/plugins/nope", "").await;
    assert_eq!(status, 404);
    let (_, services) = call(api, "GET", "/schemas/services", "").await;
    assert!(
        services["fields"]
            .as_array()
            .unwrap()
            .contains(&json!({ "retries": { "type": "integer", "default": 5 } })),
        "{services}"
    );

    // Kong's list of the plugins the node can run.
    let (_, enabled) = call(api, "GET", "/plugins/enabled", "").await;
    let names = enabled["enabled_plugins"].as_array().unwrap();
    assert!(
        names.contains(&json!("counter")) && names.contains(&json!("key-auth")),
        "{enabled}"
    );

    // Listed by the node as available and enabled.
    let (_, node) = call(api, "GET", "/", "").await;
    assert_eq!(node["plugins"]["available_on_server"]["counter"], true);
    assert_eq!(
        node["plugins"]["enabled_in_cluster"],
        json!(["counter", "rate-limiting"])
    );
}

#[tokio::test]
async fn a_custom_plugin_keeps_its_state_across_unrelated_admin_changes() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, api, _admin) = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [/a]\n        plugins:\n          - name: counter\n            config: {{ limit: 3 }}\n"
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(send(proxy, get("/a")).await.status(), 200);
    }
    // Two unrelated changes in a row: the layer is handed on each time.
    for other in ["other", "another"] {
        let form = format!("name={other}&url=http://127.0.0.1:9");
        let (status, _) = call(api, "POST", "/services", &form).await;
        assert_eq!(status, 201);
    }
    let res = send(proxy, get("/a")).await;
    assert_eq!(header(&res, "x-counter").as_deref(), Some("3"));
    assert_eq!(send(proxy, get("/a")).await.status(), 429);
    // A change to the instance itself starts afresh.
    let (_, list) = call(api, "GET", "/routes/r/plugins", "").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(api, "PATCH", &format!("/plugins/{id}"), "config.limit=5").await;
    assert_eq!(status, 200);
    let res = send(proxy, get("/a")).await;
    assert_eq!(header(&res, "x-counter").as_deref(), Some("1"));
}

#[tokio::test]
async fn plugins_above_authentication_run_before_it_and_those_below_see_the_consumer() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, _api, _admin) = gateway(&format!(
        r#"_format_version: "3.0"
consumers:
  - username: ann
    keyauth_credentials: [{{ key: ann-key }}]
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: [/]
    plugins:
      - name: key-auth
      - name: counter
      - name: early-counter
        config: {{ header: x-early }}
"#
    ))
    .await;
    // Refused by key-auth (1250): the early counter (2000) saw it, the counter (1000) did not.
    let res = send(proxy, get("/")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "x-early").as_deref(), Some("1"));
    assert_eq!(header(&res, "x-counter"), None);
    // Let in: the early counter ran before the key was checked, the counter after.
    let res = send(proxy, with_key("/", "ann-key")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-early-consumer").as_deref(), Some("-"));
    assert_eq!(header(&res, "x-counter-consumer").as_deref(), Some("ann"));
    assert_eq!(header(&res, "x-counter").as_deref(), Some("1"));
}

#[tokio::test]
async fn a_consumer_s_own_instance_of_a_custom_plugin_applies_to_that_consumer() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, api, _admin) = gateway(&format!(
        r#"_format_version: "3.0"
consumers:
  - username: ann
    keyauth_credentials: [{{ key: ann-key }}]
    plugins:
      - name: counter
        config: {{ limit: 1, header: x-ann }}
  - username: bob
    keyauth_credentials: [{{ key: bob-key }}]
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: [/]
plugins:
  - name: key-auth
  - name: counter
"#
    ))
    .await;
    let res = send(proxy, with_key("/", "ann-key")).await;
    assert_eq!(
        (res.status().as_u16(), header(&res, "x-ann")),
        (200, Some("1".into()))
    );
    let res = send(proxy, with_key("/", "ann-key")).await;
    assert_eq!(res.status(), 429, "ann's own limit");
    for n in 1..=3 {
        let res = send(proxy, with_key("/", "bob-key")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-counter"), Some(n.to_string()));
        assert_eq!(header(&res, "x-ann"), None);
    }
    // Through the Admin API, as Kong's `POST /consumers/{c}/plugins`.
    let (status, body) = call(
        api,
        "POST",
        "/consumers/bob/plugins",
        "name=counter&config.header=x-bob&config.limit=1",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["consumer"]["id"].as_str().map(str::len), Some(36));
    let res = send(proxy, with_key("/", "bob-key")).await;
    assert_eq!(header(&res, "x-bob").as_deref(), Some("1"));
    assert_eq!(send(proxy, with_key("/", "bob-key")).await.status(), 429);
}

#[cfg(feature = "program")]
#[test]
fn the_program_checks_a_file_naming_its_plugins_and_refuses_a_taken_name() {
    use std::process::ExitCode;
    use tower_gateway::program::Program;
    let (dir, file) = support::config_file(
        "program",
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - paths: [/]\n    plugins:\n      - name: counter\n        config: { limit: 5 }\n",
    );
    let check = |program: Program| {
        program.run_with_args(["--check", "--config", file.to_str().unwrap()].map(String::from))
    };
    let counter = || Definition::new("counter", 1000, CounterLayer::new);
    assert_eq!(check(Program::new().plugin(counter())), ExitCode::SUCCESS);
    // Without the plugin the file does not load; with a name taken twice nothing starts.
    assert_eq!(check(Program::new()), ExitCode::from(2));
    assert_eq!(
        check(Program::new().plugin(counter()).plugin(counter())),
        ExitCode::from(2)
    );
    assert_eq!(
        check(Program::new().registry(registry())),
        ExitCode::SUCCESS
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_plugin_runs_only_for_the_protocols_it_lists() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, _api, _admin) = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [/]\n        plugins:\n          - name: counter\n            protocols: [grpc, grpcs]\n"
    ))
    .await;
    // Plain HTTP: the plugin stands aside.
    let res = send(proxy, get("/")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-counter"), None);
    // gRPC (by its content type): it runs.
    let req = Request::post("/echo.Echo/Unary")
        .header("host", "gw")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = send(proxy, req).await;
    assert_eq!(header(&res, "x-counter").as_deref(), Some("1"));

    let refused = [
        (
            "  - name: key-auth\n    protocols: [https]\n",
            "plugins[0].protocols",
            "every protocol",
        ),
        (
            "  - name: counter\n    protocols: [http, tcp]\n",
            "plugins[0].protocols[1]",
            "\"tcp\" is not supported",
        ),
    ];
    for (plugin, path, message) in refused {
        let yaml = format!("_format_version: \"3.0\"\nplugins:\n{plugin}");
        let err = Config::from_yaml_with(&yaml, &registry()).unwrap_err();
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn a_consumer_s_own_instance_of_a_plugin_that_runs_before_authentication_is_refused() {
    let yaml = "_format_version: \"3.0\"
consumers:
  - username: ann
    plugins:
      - name: early-counter
services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: [/]
";
    let config = Config::from_yaml_with(yaml, &registry()).unwrap();
    let err = Gateway::from_config(&config, &Settings::default()).unwrap_err();
    assert!(
        err.to_string().contains("runs before authentication"),
        "{err}"
    );
    assert!(err.to_string().contains("early-counter"), "{err}");
}

#[test]
fn a_definition_s_refused_scopes_are_refused_with_the_field_to_blame() {
    let mut registry = registry();
    registry
        .register(
            Definition::new("route-only", 500, CounterLayer::new)
                .no_service()
                .no_consumer(),
        )
        .unwrap()
        .register(Definition::new("service-only", 500, CounterLayer::new).no_route())
        .unwrap();
    let head = "_format_version: \"3.0\"\nconsumers:\n  - username: ann\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    routes:\n      - name: r\n        paths: [/]\n";
    let cases = [
        (
            "    plugins:\n      - name: route-only\n",
            "services[0].plugins[0].name",
            "cannot be scoped to a service",
        ),
        (
            "plugins:\n  - name: route-only\n    consumer: ann\n",
            "plugins[0].consumer",
            "cannot be scoped to a consumer",
        ),
        (
            "plugins:\n  - name: service-only\n    route: r\n",
            "plugins[0].route",
            "cannot be scoped to a route",
        ),
    ];
    for (rest, path, message) in cases {
        let err = Config::from_yaml_with(&format!("{head}{rest}"), &registry).unwrap_err();
        assert_eq!(err.path(), Some(path), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    // Where they are allowed, they load.
    Config::from_yaml_with(
        &format!("{head}        plugins:\n          - name: route-only\n"),
        &registry,
    )
    .unwrap();
}

#[tokio::test]
async fn protocols_given_through_the_admin_api_limit_the_instance() {
    let (up, _seen) = ok_upstream().await;
    let (proxy, api, _admin) = gateway(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes:\n      - name: r\n        paths: [/]\n"
    ))
    .await;
    let (status, body) = call(
        api,
        "POST",
        "/routes/r/plugins",
        "name=counter&protocols[]=grpc&protocols[]=grpcs",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["protocols"], json!(["grpc", "grpcs"]));
    assert_eq!(header(&send(proxy, get("/")).await, "x-counter"), None);
    let (status, body) = call(api, "POST", "/plugins", "name=counter&protocols[]=tcp").await;
    assert_eq!(status, 400, "{body}");
}
