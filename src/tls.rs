//! TLS for connections made from URLs: rustls (on the `ring` provider) configured after
//! libpq's `sslmode`, `sslrootcert`, and `sslcert`/`sslkey` (a client certificate, sent when
//! the server asks for one).
//!
//! | verification | when | what is checked |
//! | --- | --- | --- |
//! | none | `prefer`; `require` without `sslrootcert` | only that the server holds the key of the certificate it sends (the handshake signature); any certificate is accepted |
//! | chain | `verify-ca`; `require` with `sslrootcert` (libpq does the same) | the chain leads to a root; validity dates; server-auth usage |
//! | chain and name | `verify-full` | the chain, and that the certificate names the host connected to (DNS name or IP address) |
//!
//! The roots are the certificates of the `sslrootcert` PEM file — only those, as with libpq:
//! mixing public roots in would let any publicly trusted certificate pass `verify-ca` — or,
//! with `sslrootcert=system` or no `sslrootcert`, Mozilla's root store (`webpki-roots`).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    verify_server_cert_signed_by_trust_anchor, WantsClientCert, WebPkiServerVerifier,
};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{FileProblem, TlsSetupError};

/// What the client checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Nothing (encryption without authentication, like libpq's `require`).
    None,
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// Mozilla's root store (`sslrootcert=system`, or no `sslrootcert`).
    System,
    /// The certificates of a PEM file, and only those.
    File(std::path::PathBuf),
}

impl RootCerts {
    fn describe(&self) -> String {
        match self {
            Self::System => "the system root store".to_owned(),
            Self::File(path) => format!("sslrootcert `{}`", path.display()),
        }
    }
}

/// A client certificate: `sslcert` (a PEM chain, the client's certificate first) and
/// `sslkey` (its PEM private key: PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCert {
    /// The `sslcert` file.
    pub(crate) cert: std::path::PathBuf,
    /// The `sslkey` file.
    pub(crate) key: std::path::PathBuf,
}

/// A rustls connector for tokio-postgres that checks what `verification` says against `roots`
/// and presents `client` when the server asks for a certificate.
pub(crate) fn connector(
    verification: Verification,
    roots: &RootCerts,
    client: Option<&ClientCert>,
) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Provider)?;
    let config = match verification {
        Verification::None => {
            // Not used to verify anything here (`prefer`), but a given `sslrootcert` that
            // cannot be read is a mistake to report, not to skip.
            if matches!(roots, RootCerts::File(_)) {
                load_roots(roots)?;
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(WithoutHostName {
                    roots: None,
                    provider,
                }))
        }
        Verification::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(WithoutHostName {
                roots: Some(Arc::new(load_roots(roots)?)),
                provider,
            })),
        Verification::ChainAndName => {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(roots)?), provider)
                    .build()
                    .map_err(|error| TlsSetupError::NoUsableRoot {
                        roots: roots.describe(),
                        error,
                    })?;
            builder.with_webpki_verifier(verifier)
        }
    };
    let mut config = with_client_cert(config, client)?;
    // PostgreSQL 17+ checks this on direct TLS connections (`sslnegotiation=direct`); older
    // servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

/// Finishes `builder` with the client certificate, if any.
fn with_client_cert(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    client: Option<&ClientCert>,
) -> Result<ClientConfig, TlsSetupError> {
    let Some(client) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let unreadable_cert = |why| TlsSetupError::ClientCert {
        path: client.cert.clone(),
        why,
    };
    let certificates = read_pem_certificates(&client.cert).map_err(unreadable_cert)?;
    if certificates.is_empty() {
        return Err(unreadable_cert(FileProblem::NoCertificate));
    }
    let unreadable_key = |why| TlsSetupError::ClientKey {
        path: client.key.clone(),
        why,
    };
    let bytes =
        std::fs::read(&client.key).map_err(|error| unreadable_key(FileProblem::Read(error)))?;
    // The PEM parser's own error is not kept: it may quote part of the file.
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| unreadable_key(FileProblem::NoPrivateKey))?;
    builder
        .with_client_auth_cert(certificates, key)
        .map_err(|error| TlsSetupError::Mismatch {
            cert: client.cert.clone(),
            key: client.key.clone(),
            error,
        })
}

fn load_roots(roots: &RootCerts) -> Result<RootCertStore, TlsSetupError> {
    let path = match roots {
        RootCerts::System => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        }
        RootCerts::File(path) => path,
    };
    let unreadable = |why| TlsSetupError::Roots {
        path: path.clone(),
        why,
    };
    let certificates = read_pem_certificates(path).map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(unreadable(FileProblem::NoCertificate));
    }
    let mut store = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        store.add(certificate).map_err(|error| {
            unreadable(FileProblem::NotARoot {
                index: index + 1,
                error,
            })
        })?;
    }
    Ok(store)
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileProblem> {
    let bytes = std::fs::read(path).map_err(FileProblem::Read)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(FileProblem::Pem)
}

/// A verifier that never checks the host name: with `roots`, it checks the chain up to them
/// (dates and server-auth usage included; `verify-ca`); without, it accepts any certificate
/// (`require`, `prefer`). Either way the handshake signatures are checked, so the peer must
/// hold the key of the certificate it presents.
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connector that records how far tokio-postgres got with it: whether it asked for a
/// connector for a host (it had passed its own checks and was about to connect) and whether it
/// started a handshake (the server had said yes to TLS).
#[derive(Clone)]
pub(crate) struct Tracked {
    inner: MakeRustlsConnect,
    asked: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
}

impl Tracked {
    /// Tracks `inner`.
    pub(crate) fn new(inner: MakeRustlsConnect) -> Self {
        Self {
            inner,
            asked: Arc::new(AtomicBool::new(false)),
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a failed attempt was refused TLS by the server: tokio-postgres asked for a
    /// connector, never started the handshake, and failed neither on I/O (the TCP connection,
    /// the TLS request) nor with a server error. With TLS required and a host name given,
    /// the server answering "no TLS" is the one failure left between those two points.
    pub(crate) fn refused(&self, error: &tokio_postgres::Error) -> bool {
        self.asked.load(Ordering::SeqCst)
            && !self.started.load(Ordering::SeqCst)
            && error.as_db_error().is_none()
            && std::error::Error::source(error)
                .is_some_and(|source| source.downcast_ref::<io::Error>().is_none())
    }
}

impl MakeTlsConnect<Socket> for Tracked {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = TrackedConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TrackedConnect, Self::Error> {
        let inner = MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, domain)?;
        self.asked.store(true, Ordering::SeqCst);
        Ok(TrackedConnect {
            inner,
            started: Arc::clone(&self.started),
        })
    }
}

/// The per-host half of [`Tracked`].
pub(crate) struct TrackedConnect {
    inner: <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect,
    started: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for TrackedConnect {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type Error =
        <<MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect as TlsConnect<Socket>>::Error;
    type Future =
        <<MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect as TlsConnect<Socket>>::Future;

    fn connect(self, stream: Socket) -> Self::Future {
        self.started.store(true, Ordering::SeqCst);
        self.inner.connect(stream)
    }
}

/// The rustls error under a failed TLS handshake of tokio-postgres, if that is what failed.
pub(crate) fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps, so look inside explicitly.
        if let Some(inner) = current
            .downcast_ref::<io::Error>()
            .and_then(|io_error| io_error.get_ref())
        {
            if let Some(found) = inner.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
        }
        source = current.source();
    }
    None
}

/// A hint for a certificate the verifier rejected.
pub(crate) fn certificate_hint(error: &rustls::Error, roots: &RootCerts) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "; the server's certificate chain does not lead to a root of {}",
            roots.describe()
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "; the certificate does not name the host connected to (sslmode=verify-ca checks \
              the chain but not the host name)"
            .to_owned(),
        _ => String::new(),
    }
}
