//! The in-process demo upstream behind the bundled configuration.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

const USERS: [(&str, &str); 3] = [("1", "Ada"), ("2", "Grace"), ("3", "Linus")];

pub(super) async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let user = path.strip_prefix("/api/users/").filter(|id| !id.is_empty());
    Ok(match (path, user) {
        ("/api/users" | "/api/users/", _) => {
            let users: Vec<_> = USERS
                .iter()
                .map(|(id, name)| serde_json::json!({ "id": id, "name": name }))
                .collect();
            json(StatusCode::OK, serde_json::json!({ "data": users }).to_string())
        }
        (_, Some(id)) => match USERS.iter().find(|(uid, _)| *uid == id) {
            Some((id, name)) => json(
                StatusCode::OK,
                serde_json::json!({ "id": id, "name": name, "method": req.method().as_str() })
                    .to_string(),
            ),
            None => json(StatusCode::NOT_FOUND, r#"{"message":"no such user"}"#.into()),
        },
        _ => json(
            StatusCode::OK,
            serde_json::json!({
                "demo": "tower-gateway demo upstream",
                "path": path,
                "method": req.method().as_str(),
                "x-forwarded-for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            })
            .to_string(),
        ),
    })
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}
