//! TCP and TLS connections to a server, for the negotiate request and the WebSocket.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::MaybeTlsStream;
use url::{Host, Url};

use super::ConnectError;

/// rustls with the ring provider and the Mozilla roots of `webpki-roots`.
pub(super) fn default_tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// The host name of a URL, without the brackets of an IPv6 address.
fn host(url: &Url) -> Result<String, ConnectError> {
    match url.host() {
        Some(Host::Domain(domain)) => Ok(domain.to_owned()),
        Some(Host::Ipv4(ip)) => Ok(ip.to_string()),
        Some(Host::Ipv6(ip)) => Ok(ip.to_string()),
        None => Err(ConnectError::InvalidUrl(format!("{url} has no host"))),
    }
}

/// Whether the URL's scheme asks for TLS (`https`, `wss`).
pub(super) fn is_secure(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "wss")
}

/// Opens a TCP connection to the URL's host, with TLS when the scheme asks for it.
pub(super) async fn open(
    url: &Url,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<MaybeTlsStream<TcpStream>, ConnectError> {
    let host = host(url)?;
    let port = url
        .port_or_known_default()
        .unwrap_or(if is_secure(url) { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    if !is_secure(url) {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    let name = ServerName::try_from(host).map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await?;
    Ok(MaybeTlsStream::Rustls(stream))
}
