//! etcd over its client API, with TLS from the node's certificates.
//!
//! Every connection is dialled first by [`probe`]: TCP connect, the TLS
//! handshake and the server's first HTTP/2 frame, all within the dial
//! timeout, so a failure has a typed cause ([`Unreachable`]) instead of a
//! gRPC error that reads the same for a dead member and a wrong certificate
//! Each request is then bounded by the command timeout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

mod probe;
mod save;

pub use probe::probe;
use probe::probe_with;
pub use save::{Saved, save_snapshot, save_snapshot_checked};

/// etcdctl's default `--dial-timeout`.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// etcdctl's default `--command-timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How the tool reaches etcd, with paths on this machine. The command line
/// fills what was typed (flags and `ETCDCTL_*`), discovery completes the
/// rest from the node, and a restore plan embeds the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA bundle.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Dial timeout in milliseconds: TCP connect and TLS handshake (0: etcdctl's 2 s).
    #[serde(default)]
    pub dial_timeout_ms: u64,
    /// The time one request may take, in milliseconds (0: etcdctl's 5 s); streams are not bounded by it.
    #[serde(default, skip_serializing_if = "is_default_command_timeout")]
    pub command_timeout_ms: u64,
}

/// Left out of JSON when the default, so documents written before the
/// setting existed read the same.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_default_command_timeout(ms: &u64) -> bool {
    *ms == 0 || u128::from(*ms) == DEFAULT_COMMAND_TIMEOUT.as_millis()
}

impl Connection {
    /// The same connection with another dial timeout.
    #[must_use]
    pub fn with_dial_timeout(&self, ms: u64) -> Connection {
        Connection {
            dial_timeout_ms: ms,
            ..self.clone()
        }
    }

    /// The same connection to one endpoint only.
    #[must_use]
    pub fn to_endpoint(&self, endpoint: &str) -> Connection {
        Connection {
            endpoints: vec![endpoint.to_string()],
            ..self.clone()
        }
    }

    /// The bound on TCP connect plus TLS handshake (at least 100 ms).
    pub fn dial_timeout(&self) -> Duration {
        match self.dial_timeout_ms {
            0 => DEFAULT_DIAL_TIMEOUT,
            ms => Duration::from_millis(ms.max(100)),
        }
    }

    /// The bound on one request (at least 100 ms).
    pub fn command_timeout(&self) -> Duration {
        match self.command_timeout_ms {
            0 => DEFAULT_COMMAND_TIMEOUT,
            ms => Duration::from_millis(ms.max(100)),
        }
    }
}

/// Which time limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// `--dial-timeout`: TCP connect, TLS handshake, the server's first frame.
    Dial,
    /// `--command-timeout`: one request.
    Command,
}

/// Why an endpoint could not be used, by cause. Only `Refused` (and an
/// endpoint that answers without a leader) says anything about etcd itself;
/// the TLS and configuration causes mean etcd may be perfectly healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Unreachable {
    /// Nothing listens at the address (connection refused).
    Refused,
    /// A time limit ran out.
    Timeout {
        /// Which one.
        limit: Limit,
        /// Its length.
        after_ms: u64,
    },
    /// The server ended the handshake over our client certificate (its TLS alert).
    ClientCertRejected {
        /// The alert, as TLS names it.
        alert: String,
    },
    /// The server's certificate is not signed by the CA we were given.
    ServerNotTrusted {
        /// The subject of the CA given (`--cacert`), when one was.
        ca_subject: Option<String>,
        /// The issuer the server's certificate names.
        server_issuer: Option<String>,
        /// What the verifier said, when it was not an unknown issuer (expired, bad signature).
        problem: Option<String>,
    },
    /// The server's certificate is not valid for the name or IP connected to.
    NameMismatch {
        /// The host in the URL.
        asked: String,
        /// The names and IPs in the certificate.
        presented: Vec<String>,
    },
    /// Something answers at the address, but not TLS (an http endpoint, another service).
    NotTls,
    /// The member answers but its cluster has no leader (no quorum).
    NoLeader,
    /// etcd's authentication refused the request.
    Auth {
        /// etcd's words.
        message: String,
    },
    /// A file of the connection could not be used (CA, cert, key).
    Config {
        /// The file.
        file: Option<PathBuf>,
        /// What is wrong with it.
        problem: String,
    },
    /// The URL or its host name cannot be used.
    BadEndpoint {
        /// What is wrong.
        problem: String,
    },
    /// Anything else, in the words of the layer that failed.
    Other {
        /// Those words.
        message: String,
    },
}

impl Unreachable {
    /// The cause points at this tool's settings (certificates, URL, CA), not at etcd.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Unreachable::ClientCertRejected { .. }
                | Unreachable::ServerNotTrusted { .. }
                | Unreachable::NameMismatch { .. }
                | Unreachable::NotTls
                | Unreachable::Auth { .. }
                | Unreachable::Config { .. }
                | Unreachable::BadEndpoint { .. }
        )
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Refused => f.write_str("connection refused (nothing listens there)"),
            Unreachable::Timeout { limit, after_ms } => {
                f.write_str(match limit {
                    Limit::Dial => "no connection (TCP, TLS, first frame) within the dial timeout",
                    Limit::Command => "no answer within the command timeout",
                })?;
                if *after_ms > 0 {
                    write!(f, " ({:?})", Duration::from_millis(*after_ms))?;
                }
                Ok(())
            }
            Unreachable::ClientCertRejected { alert } => {
                write!(
                    f,
                    "the server rejected the client certificate (TLS alert {alert})"
                )
            }
            Unreachable::ServerNotTrusted {
                ca_subject,
                server_issuer,
                problem,
            } => {
                f.write_str("the server's certificate is not trusted")?;
                if let Some(p) = problem {
                    write!(f, " ({p})")?;
                }
                match ca_subject {
                    Some(ca) => write!(f, ": the CA given is {ca}")?,
                    None => f.write_str(": no CA given")?,
                }
                if let Some(i) = server_issuer {
                    write!(f, ", the server's certificate was issued by {i}")?;
                }
                Ok(())
            }
            Unreachable::NameMismatch { asked, presented } => write!(
                f,
                "the server's certificate is not valid for {asked} (it names {})",
                presented.join(", ")
            ),
            Unreachable::NotTls => f.write_str("the server does not speak TLS"),
            Unreachable::NoLeader => f.write_str("up, NO LEADER (no quorum)"),
            Unreachable::Auth { message } => write!(f, "authentication refused: {message}"),
            Unreachable::Config { file, problem } => match file {
                Some(p) => write!(f, "{}: {problem}", p.display()),
                None => f.write_str(problem),
            },
            Unreachable::BadEndpoint { problem } | Unreachable::Other { message: problem } => {
                f.write_str(problem)
            }
        }
    }
}

/// One endpoint and why it could not be used: the error every connection
/// failure carries in its chain (find it with [`cause_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    /// The client URL.
    pub endpoint: String,
    /// Why.
    pub cause: Unreachable,
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.cause)
    }
}

impl std::error::Error for EndpointError {}

/// No endpoint of a connection could be used: each one's cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEndpoint(pub Vec<EndpointError>);

impl std::fmt::Display for NoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "no etcd endpoint could be used: {}", all.join("; "))
    }
}

impl std::error::Error for NoEndpoint {}

/// The typed cause of a failed connection or request, from its error chain:
/// our own [`EndpointError`]/[`NoEndpoint`], a command timeout, etcd's gRPC
/// status, or the transport's io and TLS errors.
pub fn cause_of(err: &anyhow::Error) -> Unreachable {
    for e in err.chain() {
        if let Some(n) = e.downcast_ref::<NoEndpoint>()
            && let Some(first) = n.0.first()
        {
            return first.cause.clone();
        }
        if let Some(one) = e.downcast_ref::<EndpointError>() {
            return one.cause.clone();
        }
        if let Some(c) = e.downcast_ref::<etcd_client::Error>()
            && let Some(u) = from_etcd_client(c)
        {
            return u;
        }
        if let Some(u) = from_std(e) {
            return u;
        }
    }
    Unreachable::Other {
        message: err.root_cause().to_string(),
    }
}

fn from_etcd_client(e: &etcd_client::Error) -> Option<Unreachable> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(from_status(s)),
        etcd_client::Error::TransportError(t) => walk(t),
        etcd_client::Error::IoError(io) => walk(io),
        etcd_client::Error::InvalidUri(u) => Some(Unreachable::BadEndpoint {
            problem: format!("invalid URL: {u}"),
        }),
        _ => None,
    }
}

fn from_status(s: &tonic::Status) -> Unreachable {
    use tonic::Code;
    if let Some(u) = etcd_status_message(s.code(), s.message()) {
        return u;
    }
    let source = std::error::Error::source(s);
    if let Some(u) = source.and_then(|e| {
        let mut cur = Some(e);
        while let Some(x) = cur {
            if let Some(u) = from_std(x) {
                return Some(u);
            }
            cur = x.source();
        }
        None
    }) {
        return u;
    }
    match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => Unreachable::Auth {
            message: s.message().to_string(),
        },
        _ => Unreachable::Other {
            message: format!("{:?}: {}", s.code(), s.message()),
        },
    }
}

/// The first typed cause in `e`'s source chain.
fn walk(e: &(dyn std::error::Error + 'static)) -> Option<Unreachable> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(u) = from_std(x) {
            return Some(u);
        }
        cur = x.source();
    }
    None
}

/// One error in a chain, by its type: io kinds, rustls errors, tonic's timeout.
fn from_std(e: &(dyn std::error::Error + 'static)) -> Option<Unreachable> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(from_rustls(t, None, "", None));
    }
    if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
        return Some(Unreachable::Timeout {
            limit: Limit::Command,
            after_ms: 0,
        });
    }
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return Some(from_status(s));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref()
            && let Some(t) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(from_rustls(t, None, "", None));
        }
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Some(Unreachable::Refused),
            std::io::ErrorKind::TimedOut => Some(Unreachable::Timeout {
                limit: Limit::Dial,
                after_ms: 0,
            }),
            _ => None,
        };
    }
    None
}

/// etcd's own refusals, which reach a client only as a gRPC code and
/// message (`rpctypes` in etcd: the message is the one thing that tells
/// "no leader" from other unavailability). Kept here, in one place.
fn etcd_status_message(code: tonic::Code, message: &str) -> Option<Unreachable> {
    use tonic::Code;
    let m = message.trim();
    match code {
        Code::Unavailable if m == "etcdserver: no leader" => Some(Unreachable::NoLeader),
        Code::Unauthenticated | Code::PermissionDenied => Some(Unreachable::Auth {
            message: m.to_string(),
        }),
        Code::InvalidArgument | Code::FailedPrecondition
            if m.starts_with("etcdserver: user name")
                || m.starts_with("etcdserver: authentication failed")
                || m == "etcdserver: invalid auth token" =>
        {
            Some(Unreachable::Auth {
                message: m.to_string(),
            })
        }
        Code::DeadlineExceeded => Some(Unreachable::Timeout {
            limit: Limit::Command,
            after_ms: 0,
        }),
        _ => None,
    }
}

/// A rustls error in our terms; `seen` is the server certificate the
/// verifier was shown, `asked` the host connected to, `ca` the CA file.
fn from_rustls(
    e: &rustls::Error,
    seen: Option<&CertificateDer<'_>>,
    asked: &str,
    ca: Option<&Path>,
) -> Unreachable {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::DecryptError),
        ) => Unreachable::ClientCertRejected {
            alert: format!("{a:?}"),
        },
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            Unreachable::NameMismatch {
                asked: asked.to_string(),
                presented: seen.map(|c| sans(c.as_ref())).unwrap_or_default(),
            }
        }
        E::InvalidCertificate(c) => Unreachable::ServerNotTrusted {
            ca_subject: ca.and_then(ca_subject),
            server_issuer: seen.and_then(issuer),
            problem: (!matches!(c, C::UnknownIssuer)).then(|| format!("{c:?}")),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            Unreachable::NotTls
        }
        other => Unreachable::Other {
            message: format!("TLS: {other}"),
        },
    }
}

fn parse_cert<'a>(der: &'a CertificateDer<'_>) -> Option<x509_parser::certificate::X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .ok()
        .map(|(_, c)| c)
}

/// The DNS names and IPs a certificate (DER) is valid for: its SANs.
pub fn sans(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, c)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::Ipv4Addr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn issuer(der: &CertificateDer<'_>) -> Option<String> {
    parse_cert(der).map(|c| c.issuer().to_string())
}

/// The subject of the first certificate in a CA file.
fn ca_subject(path: &Path) -> Option<String> {
    let pem = std::fs::read(path).ok()?;
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    parse_cert(&der).map(|c| c.subject().to_string())
}

/// The TLS settings of a connection, read once: what [`probe`] dials with.
#[derive(Debug, Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    ca: Option<PathBuf>,
}

/// Shows rustls' own verifier the server's certificate and keeps it, so a
/// failure can name the certificate's issuer and names.
#[derive(Debug)]
struct Recording {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.clone().into_owned());
        }
        match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

fn config_error(file: Option<&Path>, problem: impl Into<String>) -> anyhow::Error {
    NoEndpoint(vec![EndpointError {
        endpoint: "(every endpoint)".into(),
        cause: Unreachable::Config {
            file: file.map(Path::to_path_buf),
            problem: problem.into(),
        },
    }])
    .into()
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_error(Some(path), format!("cannot read the {what}: {e}")))
}

/// Reads the CA, certificate and key of `conn` into a rustls client config.
fn tls_config(conn: &Connection) -> Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &conn.cacert {
        let pem = read_file(ca, "CA")?;
        for der in CertificateDer::pem_slice_iter(&pem) {
            let der = der.map_err(|e| config_error(Some(ca), format!("not a PEM certificate: {e}")))?;
            roots
                .add(der)
                .map_err(|e| config_error(Some(ca), format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(config_error(Some(ca), "holds no certificate"));
        }
    }
    let inner = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| config_error(conn.cacert.as_deref(), format!("{e}")))?,
        )
    };
    let seen = Arc::new(Mutex::new(None));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(None, format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            inner,
            provider,
            seen: seen.clone(),
        }));
    let mut config = match (&conn.cert, &conn.key) {
        (Some(c), Some(k)) => {
            let cert_pem = read_file(c, "client certificate")?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| config_error(Some(c), format!("not a PEM certificate: {e}")))?;
            if chain.is_empty() {
                return Err(config_error(Some(c), "holds no certificate"));
            }
            let key_pem = read_file(k, "client key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| config_error(Some(k), format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(Some(k), format!("does not go with {}: {e}", c.display())))?
        }
        (Some(c), None) => {
            return Err(config_error(
                Some(c),
                "a client certificate needs its key (--key)",
            ));
        }
        (None, Some(k)) => {
            return Err(config_error(
                Some(k),
                "a client key needs its certificate (--cert)",
            ));
        }
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        seen,
        ca: conn.cacert.clone(),
    })
}

/// What one member says about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The store's revision.
    pub revision: i64,
    /// The leader's member id (0: no leader, no quorum).
    pub leader: u64,
    /// The cluster it belongs to.
    pub cluster_id: u64,
}

/// Connects and asks for the member's status, the whole exchange bounded by
/// `limit` and by the connection's dial and command timeouts.
pub async fn status(conn: &Connection, limit: Duration) -> Result<MemberStatus> {
    tokio::time::timeout(limit, async {
        let mut c = connect(conn).await?;
        let st = request(conn, c.status())
            .await
            .context("asking etcd for its status")?;
        Ok(MemberStatus {
            revision: st.header().map_or(0, etcd_client::ResponseHeader::revision),
            leader: st.leader(),
            cluster_id: st.header().map_or(0, etcd_client::ResponseHeader::cluster_id),
        })
    })
    .await
    .with_context(|| {
        format!(
            "etcd at {} did not answer within {limit:?}",
            conn.endpoints.join(",")
        )
    })?
}

/// One request bounded by the connection's command timeout: running out is
/// an [`EndpointError`] with `Timeout { limit: Command }`, any other failure
/// one with the request's typed cause.
pub async fn request<T>(
    conn: &Connection,
    fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    let limit = conn.command_timeout();
    let endpoint = conn.endpoints.join(",");
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let cause = from_etcd_client(&e).unwrap_or_else(|| Unreachable::Other {
                message: e.to_string(),
            });
            Err(EndpointError { endpoint, cause }.into())
        }
        Err(_) => Err(EndpointError {
            endpoint,
            cause: Unreachable::Timeout {
                limit: Limit::Command,
                after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            },
        }
        .into()),
    }
}

/// Connects to the endpoints of `conn`, with TLS when the URLs are https:
/// each endpoint is [`probe`]d first (within the dial timeout) and only
/// those that answer are used; when none does, the error is a
/// [`NoEndpoint`] with each one's cause. Every request on the client is
/// bounded by the command timeout.
pub async fn connect(conn: &Connection) -> Result<Client> {
    connect_with(conn, None).await
}

/// [`connect`] with HTTP/2 keep-alive pings every `every`: a connection that
/// stops answering them within `every` is dropped (for long-lived watches,
/// where a silent network would otherwise wait forever). Requests are not
/// bounded by the command timeout (a watch is a stream).
pub async fn connect_with_keepalive(conn: &Connection, every: Duration) -> Result<Client> {
    connect_with(conn, Some(Mode::KeepAlive(every))).await
}

/// [`connect`] for requests that take as long as the data they carry (a
/// snapshot stream, a defragmentation, a compaction, a hash of the whole
/// store): not bounded by the command timeout, which would cut them on a
/// large db; the caller bounds each by a limit of its own.
pub async fn connect_long(conn: &Connection) -> Result<Client> {
    connect_with(conn, Some(Mode::Long)).await
}

/// How a connection's requests are bounded, beyond the dial timeout.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Streams, with keep-alive pings: no request bound.
    KeepAlive(Duration),
    /// Long requests the caller bounds.
    Long,
}

async fn connect_with(conn: &Connection, mode: Option<Mode>) -> Result<Client> {
    let dial = conn.dial_timeout();
    if conn.endpoints.is_empty() {
        bail!("no etcd endpoint given");
    }
    // As etcdctl: a URL without a scheme is https when TLS files are given.
    let tls_files = conn.cacert.is_some() || conn.cert.is_some();
    let endpoints: Vec<String> = conn
        .endpoints
        .iter()
        .map(|e| match (e.contains("://"), tls_files) {
            (true, _) => e.clone(),
            (false, true) => format!("https://{e}"),
            (false, false) => format!("http://{e}"),
        })
        .collect();
    let tls = if endpoints.iter().any(|e| e.starts_with("https://")) {
        Some(tls_config(conn)?)
    } else {
        None
    };
    let probes: Vec<_> = endpoints
        .iter()
        .map(|e| {
            let tls = tls.clone().filter(|_| e.starts_with("https://"));
            let e = e.clone();
            tokio::spawn(async move {
                let r = probe_with(&e, tls, dial).await;
                (e, r)
            })
        })
        .collect();
    let (mut up, mut failed) = (Vec::new(), Vec::new());
    for p in probes {
        match p.await {
            Ok((e, Ok(()))) => up.push(e),
            Ok((endpoint, Err(cause))) => failed.push(EndpointError { endpoint, cause }),
            Err(e) => bail!("dialling etcd: {e}"),
        }
    }
    if up.is_empty() {
        return Err(NoEndpoint(failed).into());
    }
    let mut opts = ConnectOptions::new().with_connect_timeout(dial);
    match mode {
        Some(Mode::Long) => {}
        // A member cut off from quorum answers pings but sends nothing: with
        // require-leader it ends the stream instead (as kube-apiserver asks).
        Some(Mode::KeepAlive(every)) => {
            opts = opts
                .with_keep_alive(every, every)
                .with_keep_alive_while_idle(true)
                .with_require_leader(true);
        }
        None => opts = opts.with_timeout(conn.command_timeout()),
    }
    if up.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new().timeout(dial);
        if let Some(ca) = &conn.cacert {
            tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "CA")?));
        }
        if let (Some(c), Some(k)) = (&conn.cert, &conn.key) {
            tls = tls.identity(Identity::from_pem(
                read_file(c, "client certificate")?,
                read_file(k, "client key")?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    Client::connect(up.clone(), Some(opts))
        .await
        .with_context(|| format!("connecting to etcd at {}", up.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// etcd's refusals that only a message tells apart: no leader and auth; other unavailability is not guessed at.
    #[test]
    fn etcd_messages_by_code_and_words() {
        use tonic::Code;
        assert_eq!(
            etcd_status_message(Code::Unavailable, "etcdserver: no leader"),
            Some(Unreachable::NoLeader)
        );
        assert_eq!(
            etcd_status_message(Code::Unavailable, "etcdserver: request timed out"),
            None
        );
        assert_eq!(etcd_status_message(Code::Unavailable, "connection refused"), None);
        assert!(matches!(
            etcd_status_message(Code::InvalidArgument, "etcdserver: user name is empty"),
            Some(Unreachable::Auth { .. })
        ));
        assert!(matches!(
            etcd_status_message(Code::PermissionDenied, "etcdserver: permission denied"),
            Some(Unreachable::Auth { .. })
        ));
        assert_eq!(
            etcd_status_message(Code::InvalidArgument, "etcdserver: key is not provided"),
            None
        );
        assert!(matches!(
            etcd_status_message(Code::DeadlineExceeded, "context deadline exceeded"),
            Some(Unreachable::Timeout {
                limit: Limit::Command,
                ..
            })
        ));
    }

    /// rustls' typed errors map to the cause an operator acts on.
    #[test]
    fn tls_errors_by_type() {
        use rustls::{AlertDescription, CertificateError, Error};
        assert_eq!(
            from_rustls(
                &Error::AlertReceived(AlertDescription::BadCertificate),
                None,
                "h",
                None
            ),
            Unreachable::ClientCertRejected {
                alert: "BadCertificate".into()
            }
        );
        assert_eq!(
            from_rustls(
                &Error::InvalidCertificate(CertificateError::UnknownIssuer),
                None,
                "h",
                None
            ),
            Unreachable::ServerNotTrusted {
                ca_subject: None,
                server_issuer: None,
                problem: None
            }
        );
        assert!(matches!(
            from_rustls(
                &Error::InvalidCertificate(CertificateError::Expired),
                None,
                "h",
                None
            ),
            Unreachable::ServerNotTrusted { problem: Some(_), .. }
        ));
        assert_eq!(
            from_rustls(
                &Error::InvalidCertificate(CertificateError::NotValidForName),
                None,
                "10.0.0.9",
                None
            ),
            Unreachable::NameMismatch {
                asked: "10.0.0.9".into(),
                presented: Vec::new()
            }
        );
    }

    /// The cause is found under context, in our own errors and in io errors.
    #[test]
    fn cause_is_found_in_the_chain() {
        let e = anyhow::Error::new(NoEndpoint(vec![EndpointError {
            endpoint: "https://a:2379".into(),
            cause: Unreachable::Refused,
        }]))
        .context("listing the members");
        assert_eq!(cause_of(&e), Unreachable::Refused);
        let io = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).context("x");
        assert_eq!(cause_of(&io), Unreachable::Refused);
        let tls = anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        ));
        assert!(matches!(cause_of(&tls), Unreachable::ClientCertRejected { .. }));
        assert!(matches!(
            cause_of(&anyhow::anyhow!("odd")),
            Unreachable::Other { .. }
        ));
    }

    /// Scripts read the cause from JSON: a kebab-case tag and camelCase fields.
    #[test]
    fn cause_json_shape() {
        let j = serde_json::to_value(Unreachable::Timeout {
            limit: Limit::Dial,
            after_ms: 2000,
        })
        .unwrap();
        assert_eq!(
            j,
            serde_json::json!({"cause": "timeout", "limit": "dial", "afterMs": 2000})
        );
        let j = serde_json::to_value(Unreachable::NoLeader).unwrap();
        assert_eq!(j, serde_json::json!({"cause": "no-leader"}));
    }

    /// Zero means etcdctl's defaults; the default command timeout is left out of JSON.
    #[test]
    fn timeouts_default_like_etcdctl() {
        let c = Connection::default();
        assert_eq!(c.dial_timeout(), DEFAULT_DIAL_TIMEOUT);
        assert_eq!(c.command_timeout(), DEFAULT_COMMAND_TIMEOUT);
        let c = Connection {
            command_timeout_ms: 5000,
            ..Connection::default()
        };
        assert!(
            serde_json::to_value(&c)
                .unwrap()
                .get("commandTimeoutMs")
                .is_none()
        );
        let c = Connection {
            command_timeout_ms: 30_000,
            ..Connection::default()
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["commandTimeoutMs"], 30_000);
    }

    /// A probe of a port nothing listens on is refused at once; of a silent
    /// listener, times out at the dial timeout.
    #[tokio::test]
    async fn probe_refused_and_silent() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let conn = Connection {
            dial_timeout_ms: 300,
            ..Connection::default()
        };
        assert_eq!(
            probe(&conn, &format!("http://127.0.0.1:{port}")).await,
            Err(Unreachable::Refused)
        );
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let start = Instant::now();
        assert_eq!(
            probe(&conn, &format!("http://127.0.0.1:{port}")).await,
            Err(Unreachable::Timeout {
                limit: Limit::Dial,
                after_ms: 300
            })
        );
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }
}
