//! TLS for costplane's listeners (OTLP/gRPC, OTLP/HTTP and the API).
//!
//! Invariants:
//! - One `[tls]` section serves all three listeners with rustls (ring).
//!   ALPN offers `h2` and `http/1.1`: gRPC clients need h2, the API and
//!   OTLP/HTTP speak both.
//! - With `client_ca_file`, clients must present a certificate that CA
//!   signed (mTLS); a client without one fails the handshake.
//! - The certificate and key are read again on SIGHUP and whenever their
//!   modification times change (checked every `reload_interval`); new
//!   connections get the new certificate, open ones keep theirs. A reload
//!   that fails (a half-written file) keeps the previous certificate and
//!   logs why.
//! - Handshakes run in their own tasks with a time limit, so a client that
//!   stalls mid-handshake holds up no one else's connection.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tls]`: certificates for every listener. No cert_file: plain TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate they signed.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files' modification times are checked.
    pub reload_interval: String,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection { cert_file: None, key_file: None, client_ca_file: None, reload_interval: "10s".into() }
    }
}

impl TlsSection {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err("tls.cert_file and tls.key_file go together".into()),
        }
        if self.client_ca_file.is_some() && !self.enabled() {
            return Err("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
        }
        crate::config::parse_duration(&self.reload_interval).map_err(|e| format!("tls.reload_interval: {e}"))?;
        Ok(())
    }

    fn files(&self) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.client_ca_file].into_iter().flatten().cloned().collect()
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Builds the rustls configuration the section describes.
fn build(section: &TlsSection) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert_file), Some(key_file)) = (&section.cert_file, &section.key_file) else {
        return Err("tls.cert_file and tls.key_file are required".into());
    };
    let chain = certs(cert_file)?;
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("cannot read the private key from {}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &section.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for ca in certs(ca_file)? {
                roots.add(ca).map_err(|e| format!("{}: not a usable CA certificate: {e}", ca_file.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate in force, replaced on reload.
pub struct Tls {
    section: TlsSection,
    current: RwLock<Arc<ServerConfig>>,
    stamps: RwLock<Vec<Option<SystemTime>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("section", &self.section).finish_non_exhaustive()
    }
}

fn stamps(section: &TlsSection) -> Vec<Option<SystemTime>> {
    section.files().iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
}

impl Tls {
    /// Loads the certificate (`None` when TLS is off).
    pub fn load(section: &TlsSection) -> Result<Option<Arc<Tls>>, String> {
        if !section.enabled() {
            return Ok(None);
        }
        section.validate()?;
        let config = build(section)?;
        Ok(Some(Arc::new(Tls { section: section.clone(), current: RwLock::new(config), stamps: RwLock::new(stamps(section)) })))
    }

    /// The acceptor of the certificate in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// [`Tls::acceptor`] offering `protocols` by ALPN instead of HTTP's
    /// (PostgreSQL clients ask for `postgresql`).
    pub fn acceptor_for(&self, protocols: &[&[u8]]) -> TlsAcceptor {
        let mut config = ServerConfig::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reads the files again; keeps the old certificate if that fails.
    pub fn reload(&self, why: &str) {
        match build(&self.section) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
                *self.stamps.write().unwrap_or_else(std::sync::PoisonError::into_inner) = stamps(&self.section);
                tracing::info!(reason = why, "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(reason = why, error = %e, "TLS certificate reload failed; keeping the previous one"),
        }
    }

    /// Reloads on SIGHUP and when the files change, until `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, stop: CancellationToken) {
        let tls = Arc::clone(self);
        let every =
            crate::config::parse_duration(&self.section.reload_interval).unwrap_or(Duration::from_secs(10)).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = hangup => tls.reload("SIGHUP"),
                    () = tokio::time::sleep(every) => {
                        let changed = *tls.stamps.read().unwrap_or_else(std::sync::PoisonError::into_inner) != stamps(&tls.section);
                        if changed {
                            tls.reload("the certificate files changed");
                        }
                    }
                }
            }
        });
    }
}

/// Accepts TCP connections and hands over those whose handshake succeeds.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    stop: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// The TLS connections of one listener, for `axum::serve`.
pub struct TlsListener {
    pub rx: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    pub local: std::net::SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor stopped (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A TLS connection as tonic's server takes it.
pub struct GrpcTls(pub TlsStream<TcpStream>);

impl tonic::transport::server::Connected for GrpcTls {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for GrpcTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
