//! TLS for pgsurge's own PostgreSQL connections (readiness, standby proofs, the state
//! lock), with libpq's `sslmode` meanings over rustls:
//!
//! | sslmode       | encrypted                  | server certificate checked            |
//! |---------------|----------------------------|---------------------------------------|
//! | `disable`     | never                      | —                                     |
//! | `allow`       | never (tries plain only)   | —                                     |
//! | `prefer`      | if the server offers it    | no (as libpq)                         |
//! | `require`     | always, or fail            | no — but with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca`   | always, or fail            | chains to `sslrootcert`               |
//! | `verify-full` | always, or fail            | chains to `sslrootcert` and names the host |
//!
//! `verify-ca` / `verify-full` need `sslrootcert` (a PEM file of trusted CA
//! certificates): pgsurge does not fall back to any other trust store silently.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: &'static str = "disable, allow, prefer, require, verify-ca or verify-full";

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must chain to a configured CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A `sslmode` that is none of libpq's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} must be {}", SslMode::ALL)]
pub struct UnknownSslMode {
    pub given: String,
}

impl FromStr for SslMode {
    type Err = UnknownSslMode;
    fn from_str(s: &str) -> Result<Self, UnknownSslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(UnknownSslMode {
                    given: other.into(),
                })
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode {mode} needs sslrootcert (a PEM file of the CA certificates to trust)")]
    NoRootCert { mode: SslMode },
    #[error("sslrootcert {path}: {message}")]
    RootCert { path: PathBuf, message: String },
}

/// How to secure one kind of connection: the mode and the connector that implements it.
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    connector: MakeRustls,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls").field("mode", &self.mode).finish()
    }
}

impl PgTls {
    /// Reads `rootcert` now, so a missing or empty CA file fails before any connection.
    pub fn new(mode: SslMode, rootcert: Option<&Path>) -> Result<PgTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rootcert.map(read_roots).transpose()?;
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(TlsError::NoRootCert { mode })
            }
            (SslMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
            // libpq: `require` with a root certificate verifies like verify-ca.
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(AnyName {
                inner: webpki(roots, &provider)?,
            }),
            // Encryption without authentication: what libpq does for prefer/require
            // without a root certificate. Stops a passive eavesdropper, not a MITM.
            (_, _) => Arc::new(Unverified {
                provider: provider.clone(),
            }),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::RootCert {
                path: rootcert.map(Path::to_path_buf).unwrap_or_default(),
                message: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(PgTls {
            mode,
            connector: MakeRustls(Arc::new(config)),
        })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// Connect with this TLS setting; `cfg`'s own ssl mode is overwritten.
    pub async fn connect(
        &self,
        cfg: &mut tokio_postgres::Config,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                RustlsStream<tokio_postgres::Socket>,
            >,
        ),
        tokio_postgres::Error,
    > {
        cfg.ssl_mode(match self.mode {
            // tokio-postgres has no `allow`: plain first is all it would do anyway.
            SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        cfg.connect(self.connector.clone()).await
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |message: String| TlsError::RootCert {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    Ok(roots)
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::RootCert {
            path: PathBuf::new(),
            message: e.to_string(),
        })
}

/// verify-ca: the chain must verify; the name in the certificate is not compared (a
/// cloned replica carries its seed's certificate, whatever its address).
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // WebPKI checks the chain first and the name last, so a name error means the
        // chain verified.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// prefer / require without a CA: any certificate, but the handshake itself is checked.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `tokio_postgres::tls::MakeTlsConnect` over rustls.
#[derive(Clone)]
pub struct MakeRustls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = std::io::Error;

    // Called for every connection, TLS or not: a host that is not a valid TLS name
    // (a Unix socket path) only fails if TLS is actually attempted.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, std::io::Error> {
        Ok(RustlsConnect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_string()).map_err(|e| e.to_string()),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("not a TLS server name: {e}"),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    // SCRAM without channel binding (tokio-postgres's default `prefer` falls back).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// Why a conninfo cannot be used. Never carries the conninfo itself (it may hold a
/// password): the key, or the parser's own message.
#[derive(Debug, thiserror::Error)]
pub enum ConninfoError {
    #[error("sslmode: {0}")]
    SslMode(#[from] UnknownSslMode),
    #[error("not a URL: {reason}")]
    NotAUrl { reason: String },
    #[error("conninfo: expected `=` after {key:?}")]
    MissingEquals { key: String },
    #[error("conninfo: unterminated quote in {key:?}")]
    UnterminatedQuote { key: String },
    #[error("{0}")]
    Config(#[source] tokio_postgres::Error),
}

/// A libpq conninfo (`key=value ...` or a `postgres://` URL) split into what
/// tokio-postgres reads and the TLS keys it does not (`sslmode` beyond `require`,
/// `sslrootcert`), so a conninfo written for libpq means the same here.
pub fn split_conninfo(
    conninfo: &str,
) -> Result<(tokio_postgres::Config, SslMode, Option<PathBuf>), ConninfoError> {
    let mut mode = SslMode::Prefer;
    let mut rootcert = None;
    let mut take = |k: &str, v: &str| -> Result<bool, ConninfoError> {
        match k {
            "sslmode" => mode = v.parse()?,
            "sslrootcert" => rootcert = Some(PathBuf::from(v)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let mut url = reqwest::Url::parse(conninfo).map_err(|e| ConninfoError::NotAUrl {
            reason: e.to_string(),
        })?;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            if !take(&k, &v)? {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        url.to_string()
    } else {
        let mut kept = String::new();
        for (k, v) in conninfo_pairs(conninfo)? {
            if !take(&k, &v)? {
                let quoted = v.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push_str(&format!("{k}='{quoted}' "));
            }
        }
        kept
    };
    let cfg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(ConninfoError::Config)?;
    Ok((cfg, mode, rootcert))
}

/// libpq's `key = value` syntax: values bare or single-quoted, `\` escapes in quotes.
fn conninfo_pairs(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConninfoError::MissingEquals { key });
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConninfoError::UnterminatedQuote { key }),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_keeps_libpq_tls_keys_for_us() {
        let (cfg, mode, root) = split_conninfo(
            "host=db.example port=5433 user=pgsurge password='a b\\'c' sslmode=verify-full sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(cfg.get_ports(), &[5433]);
        assert_eq!(cfg.get_password(), Some(&b"a b'c"[..]));
        let (cfg, mode, root) = split_conninfo(
            "postgres://u@h:6000/db?sslmode=verify-ca&sslrootcert=%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            (mode, root),
            (SslMode::VerifyCa, Some(PathBuf::from("/ca.pem")))
        );
        assert_eq!(cfg.get_application_name(), Some("x"));
        assert_eq!(cfg.get_dbname(), Some("db"));
        let (_, mode, root) = split_conninfo("host=h user=u").unwrap();
        assert_eq!((mode, root), (SslMode::Prefer, None));
        assert!(matches!(
            split_conninfo("host=h sslmode=sometimes"),
            Err(ConninfoError::SslMode(UnknownSslMode { given })) if given == "sometimes"
        ));
        let e = split_conninfo("host='h").unwrap_err();
        assert!(
            matches!(&e, ConninfoError::UnterminatedQuote { key } if key == "host"),
            "{e}"
        );
        assert_eq!(e.to_string(), r#"conninfo: unterminated quote in "host""#);
    }

    #[test]
    fn verifying_modes_need_a_root_certificate() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(
                PgTls::new(mode, None).unwrap_err(),
                TlsError::NoRootCert { mode }
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = PgTls::new(SslMode::VerifyFull, Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        assert!(PgTls::new(SslMode::Require, None).is_ok());
    }
}
