//! The client's negotiate request (HUB-PROTOCOL.md §2.1), over one HTTP/1.1 connection.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use url::Url;

use super::{ConnectError, stream};

/// The largest negotiate response read; a larger one is [`ConnectError::ResponseTooLarge`].
pub(super) const MAX_RESPONSE: usize = 64 * 1024;

/// The negotiate URL for a hub URL: `{path}/negotiate`, keeping the query, plus the version and stateful
/// reconnect wish, as the JavaScript client builds it.
pub(super) fn negotiate_url(hub: &Url, stateful_reconnect: bool) -> Url {
    let mut url = hub.clone();
    let path = format!("{}/negotiate", url.path().trim_end_matches('/'));
    url.set_path(&path);
    if !url
        .query_pairs()
        .any(|(name, _)| name == "negotiateVersion")
    {
        url.query_pairs_mut().append_pair("negotiateVersion", "1");
    }
    if stateful_reconnect {
        url.query_pairs_mut()
            .append_pair("useStatefulReconnect", "true");
    }
    url
}

/// POSTs to `url` and returns the response body.
pub(super) async fn post(
    url: &Url,
    headers: &HeaderMap,
    access_token: Option<&str>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Bytes, ConnectError> {
    let io = stream::open(url, tls).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection task ends with the exchange: the sender is dropped when this function returns.
    tokio::spawn(connection);

    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target)
        .body(Empty::<Bytes>::new())?;
    let request_headers = request.headers_mut();
    request_headers.insert(HOST, HeaderValue::from_str(authority)?);
    request_headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    request_headers.insert(
        "X-Requested-With",
        HeaderValue::from_static("XMLHttpRequest"),
    );
    request_headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("courier-http/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in headers {
        request_headers.insert(name, value.clone());
    }
    if let Some(token) = access_token {
        request_headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
    }

    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        return Err(ConnectError::Status(response.status()));
    }
    match Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) => match error.downcast::<hyper::Error>() {
            Ok(error) => Err(ConnectError::Http(*error)),
            Err(_) => Err(ConnectError::ResponseTooLarge),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::negotiate_url;
    use url::Url;

    #[test]
    fn the_negotiate_url_keeps_the_query_and_adds_the_version() {
        let hub = Url::parse("https://example.com/chat/?tenant=a").unwrap();
        assert_eq!(
            negotiate_url(&hub, true).as_str(),
            "https://example.com/chat/negotiate?tenant=a&negotiateVersion=1&useStatefulReconnect=true"
        );
        let hub = Url::parse("http://example.com/chat?negotiateVersion=0").unwrap();
        assert_eq!(
            negotiate_url(&hub, false).as_str(),
            "http://example.com/chat/negotiate?negotiateVersion=0"
        );
    }
}
