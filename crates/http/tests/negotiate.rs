//! `POST {path}/negotiate` against the shapes of the .NET server (shared/protocol/vectors/negotiate.json).

mod common;

use common::{Echo, Guarded, http, serve};
use courier_http::{EndpointOptions, HubEndpoint};
use serde_json::Value;

const WEBSOCKETS_ONLY: &str = r#"{"transport":"WebSockets","transferFormats":["Text","Binary"]}]"#;
const OTHER_TRANSPORTS: &str = r#"{"transport":"WebSockets","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}]"#;

fn vector(name: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/protocol/vectors/negotiate.json"
    );
    let vectors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    vectors
        .into_iter()
        .find(|vector| vector["name"] == name)
        .unwrap()
}

/// The vector's body as this endpoint writes it: its ids, and WebSockets as the only transport.
fn expected_body(name: &str, connection_id: &str, connection_token: Option<&str>) -> String {
    let vector = vector(name);
    let mut body = vector["body_text"]
        .as_str()
        .unwrap()
        .replace(OTHER_TRANSPORTS, WEBSOCKETS_ONLY);
    body = body.replace(
        vector["body"]["connectionId"].as_str().unwrap(),
        connection_id,
    );
    if let (Some(theirs), Some(ours)) =
        (vector["body"]["connectionToken"].as_str(), connection_token)
    {
        body = body.replace(theirs, ours);
    }
    body
}

fn assert_is_id(id: &str) {
    assert_eq!(id.len(), 22, "{id}");
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{id}"
    );
}

async fn negotiate(options: EndpointOptions, query: &str) -> (Value, String) {
    let addr = serve(HubEndpoint::new(Echo).options(options).router("/chathub")).await;
    let response = http(addr, "POST", &format!("/chathub/negotiate{query}"), "").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    (serde_json::from_str(&response.body).unwrap(), response.body)
}

#[tokio::test]
async fn version_1_has_the_dotnet_shape_and_random_ids() {
    let (body, text) = negotiate(EndpointOptions::new(), "?negotiateVersion=1").await;
    let (id, token) = (
        body["connectionId"].as_str().unwrap(),
        body["connectionToken"].as_str().unwrap(),
    );
    assert_is_id(id);
    assert_is_id(token);
    assert_ne!(id, token);
    assert_eq!(text, expected_body("V1_AllTransports", id, Some(token)));
}

#[tokio::test]
async fn no_version_means_version_0_without_a_token() {
    let (body, text) = negotiate(EndpointOptions::new(), "").await;
    let id = body["connectionId"].as_str().unwrap();
    assert_is_id(id);
    assert_eq!(text, expected_body("V0_NoVersionQuery", id, None));
}

#[tokio::test]
async fn a_higher_version_is_clamped_to_1() {
    let (body, text) = negotiate(EndpointOptions::new(), "?negotiateVersion=2").await;
    let (id, token) = (
        body["connectionId"].as_str().unwrap(),
        body["connectionToken"].as_str().unwrap(),
    );
    assert_eq!(text, expected_body("V1_VersionClamped", id, Some(token)));
}

#[tokio::test]
async fn stateful_reconnect_is_granted_only_when_asked_and_allowed() {
    let allowed = EndpointOptions::new().allow_stateful_reconnects(true);
    let (body, text) = negotiate(
        allowed.clone(),
        "?negotiateVersion=1&useStatefulReconnect=true",
    )
    .await;
    let (id, token) = (
        body["connectionId"].as_str().unwrap(),
        body["connectionToken"].as_str().unwrap(),
    );
    assert_eq!(text, expected_body("V1_StatefulReconnect", id, Some(token)));

    let (not_asked, _) = negotiate(allowed, "?negotiateVersion=1").await;
    assert_eq!(not_asked.get("useStatefulReconnect"), None);
    let (not_allowed, _) = negotiate(
        EndpointOptions::new(),
        "?negotiateVersion=1&useStatefulReconnect=true",
    )
    .await;
    assert_eq!(not_allowed.get("useStatefulReconnect"), None);
}

#[tokio::test]
async fn two_negotiates_get_different_ids() {
    let addr = serve(HubEndpoint::new(Echo).router("/chathub")).await;
    let first = http(addr, "POST", "/chathub/negotiate?negotiateVersion=1", "")
        .await
        .body;
    let second = http(addr, "POST", "/chathub/negotiate?negotiateVersion=1", "")
        .await
        .body;
    let (first, second): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&second).unwrap(),
    );
    assert_ne!(first["connectionId"], second["connectionId"]);
    assert_ne!(first["connectionToken"], second["connectionToken"]);
}

#[tokio::test]
async fn errors_are_http_200_with_the_dotnet_text() {
    let (_, text) = negotiate(EndpointOptions::new(), "?negotiateVersion=abc").await;
    assert_eq!(
        text,
        vector("Error_NonIntegerVersion")["body_text"]
            .as_str()
            .unwrap()
    );
    let (_, text) = negotiate(EndpointOptions::new(), "?negotiateVersion=-1").await;
    assert_eq!(
        text,
        r#"{"error":"The client requested version '-1', but the server does not support this version."}"#
    );
}

#[tokio::test]
async fn only_post_negotiates() {
    let addr = serve(HubEndpoint::new(Echo).router("/chathub")).await;
    for method in ["GET", "PUT", "DELETE"] {
        assert_eq!(
            http(addr, method, "/chathub/negotiate?negotiateVersion=1", "")
                .await
                .status,
            405,
            "{method}"
        );
    }
}

#[tokio::test]
async fn the_auth_hook_sees_the_bearer_token_and_may_refuse() {
    let endpoint = HubEndpoint::new(Guarded("good"));
    let addr = serve(endpoint.router("/chathub")).await;
    let target = "/chathub/negotiate?negotiateVersion=1";
    assert_eq!(http(addr, "POST", target, "").await.status, 401);
    assert_eq!(
        http(addr, "POST", target, "Authorization: Bearer bad\r\n")
            .await
            .status,
        401
    );
    assert_eq!(
        http(addr, "POST", target, "Authorization: Bearer good\r\n")
            .await
            .status,
        200
    );
    let query = "/chathub/negotiate?negotiateVersion=1&access_token=good";
    assert_eq!(http(addr, "POST", query, "").await.status, 200);
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let preflight = "Origin: http://example.com\r\nAccess-Control-Request-Method: POST\r\n";
    let addr = serve(HubEndpoint::new(Echo).router("/chathub")).await;
    let response = http(addr, "OPTIONS", "/chathub/negotiate", preflight).await;
    assert!(
        !response
            .headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin")
    );

    let cors = tower_http::cors::CorsLayer::permissive();
    let addr = serve(HubEndpoint::new(Echo).cors(cors).router("/chathub")).await;
    let response = http(addr, "OPTIONS", "/chathub/negotiate", preflight).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *")
    );
}
