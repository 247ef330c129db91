//! An axum application that nests the gateway's Router and ReverseProxy under a tower-http
//! layer, over real sockets.

mod support;

use std::net::SocketAddr;

use support::*;

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

#[tokio::test]
async fn axum_nests_the_gateway_and_its_layers_apply_to_proxied_responses() {
    let (up, mut seen) = ok_upstream().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let app = example::app(up, local).unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let res = send(local, get("/health")).await;
    assert_eq!(res.headers()["server"], "tower-gateway");
    assert_eq!(text(res).await, "ok");

    let res = send(local, get("/api/users/7?x=1")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["server"], "tower-gateway");
    assert_eq!(text(res).await, "ok");
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.uri, "/users/7?x=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");

    let res = send(local, get("/api/orders")).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        text(res).await,
        r#"{"message":"no Route matched with those values"}"#
    );
}
