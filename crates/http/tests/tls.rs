//! Negotiate over `https` and the WebSocket over `wss`, against a server with a self-signed certificate.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::Echo;
use courier::Frame;
use courier_http::{ConnectError, HttpConnector, HubEndpoint};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves the echo endpoint over TLS on 127.0.0.1; returns its address and certificate.
async fn serve_tls() -> (SocketAddr, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let router = HubEndpoint::new(Echo).router::<()>("/hub");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = TowerToHyperService::new(router);
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                let _ = connection.await;
            });
        }
    });
    (addr, cert)
}

fn trusting(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn negotiate_over_https_and_frames_over_wss() {
    let (addr, cert) = serve_tls().await;
    let connector = HttpConnector::new(&format!("https://{addr}/hub"))
        .unwrap()
        .tls_config(trusting(cert));
    let (mut transport, session) = connector.connect().await.unwrap();
    assert!(
        session
            .websocket_url()
            .as_str()
            .starts_with(&format!("wss://{addr}/hub?id="))
    );
    let frame = Frame::Text(Bytes::from_static(b"{\"type\":6}\x1e"));
    transport.send(frame.clone()).await.unwrap();
    assert_eq!(transport.next().await.unwrap().unwrap(), frame);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (addr, _) = serve_tls().await;
    let result = HttpConnector::new(&format!("https://{addr}/hub"))
        .unwrap()
        .connect()
        .await;
    assert!(matches!(result, Err(ConnectError::Io(_))), "{result:?}");
}
