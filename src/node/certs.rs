//! `etcd-rescue certs`: what `kubeadm certs check-expiration` reports (the
//! same certificates, CAs, residual times, `!MISSING!` and externally managed
//! markers), plus what it does not: each certificate checked against its CA's
//! signature, the etcd server and peer certificates' SANs against the
//! addresses in `etcd.yaml`, every private key against its certificate's
//! public key (`keys`: a swapped key reads as clean otherwise), and
//! a permission audit of the private keys, kubeconfigs, pki dirs and backups.
//! Read-only: it says how to renew and changes nothing.

mod keys;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use x509_parser::prelude::*;

use crate::root::Root;

/// Where a certificate is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A PEM file under the pki dir.
    Pem(&'static str),
    /// The client certificate embedded in a kubeconfig under `/etc/kubernetes`.
    Kubeconfig(&'static str),
}

/// kubeadm's certificate list (`kubeadm certs check-expiration`): name, file, CA.
const CERTS: [(&str, Source, &str); 11] = [
    ("admin.conf", Source::Kubeconfig("admin.conf"), "ca"),
    ("apiserver", Source::Pem("apiserver.crt"), "ca"),
    (
        "apiserver-etcd-client",
        Source::Pem("apiserver-etcd-client.crt"),
        "etcd-ca",
    ),
    (
        "apiserver-kubelet-client",
        Source::Pem("apiserver-kubelet-client.crt"),
        "ca",
    ),
    (
        "controller-manager.conf",
        Source::Kubeconfig("controller-manager.conf"),
        "ca",
    ),
    (
        "etcd-healthcheck-client",
        Source::Pem("etcd/healthcheck-client.crt"),
        "etcd-ca",
    ),
    ("etcd-peer", Source::Pem("etcd/peer.crt"), "etcd-ca"),
    ("etcd-server", Source::Pem("etcd/server.crt"), "etcd-ca"),
    (
        "front-proxy-client",
        Source::Pem("front-proxy-client.crt"),
        "front-proxy-ca",
    ),
    ("scheduler.conf", Source::Kubeconfig("scheduler.conf"), "ca"),
    ("super-admin.conf", Source::Kubeconfig("super-admin.conf"), "ca"),
];

/// kubeadm's CAs: name, certificate (the key beside it, `.key`).
const CAS: [(&str, &str); 3] = [
    ("ca", "ca.crt"),
    ("etcd-ca", "etcd/ca.crt"),
    ("front-proxy-ca", "front-proxy-ca.crt"),
];

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Worth knowing.
    Note,
    /// Fix it soon (exit 1 only for expiry within the warning window).
    Warning,
    /// Fix it now: expired, broken chain, secrets readable by others (exit 1).
    Critical,
}

/// One certificate or CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cert {
    /// kubeadm's name for it.
    pub name: String,
    /// Where it is read from.
    pub path: PathBuf,
    /// The file is there and holds a certificate.
    pub present: bool,
    /// Its notAfter (RFC 3339), when read.
    pub expires: Option<String>,
    /// Seconds left (negative: expired).
    pub residual_seconds: Option<i64>,
    /// The CA that signs it (empty for a CA).
    pub ca: String,
    /// Its CA's key is not on the node (an external CA): kubeadm cannot renew it.
    pub externally_managed: bool,
    /// What is wrong with it.
    pub problems: Vec<Finding>,
}

/// What kind of thing is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
    /// Within the warning window.
    Expiring,
    /// The file is not there (kubeadm's `!MISSING!`).
    Missing,
    /// There, but no certificate in it.
    Unreadable,
    /// Not signed by its CA, or its CA is missing.
    Chain,
    /// Its SANs do not cover the addresses etcd.yaml uses.
    Sans,
    /// A file or dir others can read or write, or not root's.
    Permission,
    /// Its private key is another key pair's: TLS (or signing) with the pair fails.
    KeyMismatch,
    /// Its private key is there but does not read (garbage, encrypted, cut short).
    KeyUnreadable,
    /// Its private key is not there.
    KeyMissing,
}

/// Something wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What kind.
    pub kind: Kind,
    /// What, in words.
    pub message: String,
}

/// One permission finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// The file or dir.
    pub path: PathBuf,
    /// Its mode (octal text) and owner uid.
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// What is wrong.
    pub finding: Finding,
}

/// A key pair that is not one of kubeadm's certificates (`sa.key` and
/// `sa.pub`, a `*.key` beside a `*.crt` kubeadm does not list) whose halves
/// do not go together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyProblem {
    /// The private key.
    pub key: PathBuf,
    /// What it is checked against: a certificate or a public key.
    pub public: PathBuf,
    /// What is wrong.
    pub finding: Finding,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The leaf certificates, kubeadm's order.
    pub certificates: Vec<Cert>,
    /// The CAs.
    pub authorities: Vec<Cert>,
    /// Key pairs besides the certificates' own (their key findings are on them).
    pub keys: Vec<KeyProblem>,
    /// Permission findings.
    pub permissions: Vec<Permission>,
    /// The warning window in days.
    pub warn_days: u64,
    /// Nothing expires within the window, nothing critical.
    pub ok: bool,
    /// Certificates issued after the newest node bundle in the backup dirs
    /// was taken: no bundle holds them (filled by [`not_in_bundle`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_in_bundle: Vec<NotInBundle>,
}

/// A certificate issued (its notBefore) after the newest node bundle was
/// taken: a rotated or reissued certificate no bundle holds, so a node
/// rebuilt from the bundle comes back with the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotInBundle {
    /// The certificate (a node path).
    pub path: PathBuf,
    /// Its notBefore (RFC 3339).
    pub not_before: String,
    /// The newest bundle (a path on this machine).
    pub bundle: PathBuf,
    /// When that bundle was taken (RFC 3339).
    pub bundle_taken: String,
}

/// Every certificate under `/etc/kubernetes/pki` whose notBefore is later
/// than `taken`, when the newest node bundle, `bundle`, was taken.
pub fn not_in_bundle(root: &Root, bundle: &Path, taken: SystemTime) -> Vec<NotInBundle> {
    let taken_s = taken
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let pki = root.host("/etc/kubernetes/pki");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&pki)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() || e.path().extension().is_none_or(|x| x != "crt") {
            continue;
        }
        let Some(der) = std::fs::read(e.path()).ok().and_then(|t| first_pem_der(&t)) else {
            continue;
        };
        let Ok((_, x)) = X509Certificate::from_der(&der) else {
            continue;
        };
        let nb = x.validity().not_before.timestamp();
        if nb > taken_s {
            let rel = e.path().strip_prefix(root.dir()).unwrap_or(e.path());
            out.push(NotInBundle {
                path: Path::new("/").join(rel),
                not_before: crate::utc::rfc3339(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(nb).unwrap_or(0)),
                ),
                bundle: bundle.to_path_buf(),
                bundle_taken: crate::utc::rfc3339(taken),
            });
        }
    }
    out
}

impl Report {
    /// Every finding: certificates', key pairs' and permissions'.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.certificates
            .iter()
            .chain(&self.authorities)
            .flat_map(|c| &c.problems)
            .chain(self.keys.iter().map(|k| &k.finding))
            .chain(self.permissions.iter().map(|p| &p.finding))
    }
}

fn finding(severity: Severity, kind: Kind, message: impl Into<String>) -> Finding {
    Finding {
        severity,
        kind,
        message: message.into(),
    }
}

/// The DER of the first PEM certificate in `text`.
fn first_pem_der(text: &[u8]) -> Option<Vec<u8>> {
    for pem in Pem::iter_from_buffer(text) {
        let pem = pem.ok()?;
        if pem.label == "CERTIFICATE" {
            return Some(pem.contents);
        }
    }
    None
}

/// The client certificate a kubeconfig embeds (`client-certificate-data`,
/// base64 PEM) or names (`client-certificate`, a path on the node).
fn kubeconfig_cert(root: &Root, text: &str) -> Option<Vec<u8>> {
    let doc: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
    let user = doc.get("users")?.as_sequence()?.first()?.get("user")?;
    if let Some(data) = user.get("client-certificate-data").and_then(|v| v.as_str()) {
        let pem = base64_decode(data.trim())?;
        return first_pem_der(&pem);
    }
    let file = user.get("client-certificate")?.as_str()?;
    first_pem_der(&std::fs::read(root.host(file)).ok()?)
}

/// The client key a kubeconfig embeds (`client-key-data`) or names
/// (`client-key`): `None` when it has neither, an error when it does not read.
fn kubeconfig_key(root: &Root, text: &str) -> Option<Result<Vec<u8>, String>> {
    let doc: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
    let user = doc.get("users")?.as_sequence()?.first()?.get("user")?;
    if let Some(data) = user.get("client-key-data").and_then(|v| v.as_str()) {
        return Some(base64_decode(data.trim()).ok_or_else(|| "client-key-data is not base64".to_string()));
    }
    let file = user.get("client-key")?.as_str()?;
    Some(std::fs::read(root.host(file)).map_err(|e| format!("client-key {file} cannot be read: {e}")))
}

/// What a key pair's check found, in words for the operator: `key` and
/// `public` as the node names them, `fix` what to do about it.
struct PairNames<'a> {
    key: &'a str,
    public: &'a str,
    /// What the mismatch breaks.
    breaks: &'a str,
    fix: &'a str,
}

/// The finding for a private key (its bytes, or why they are not there)
/// checked against the public key `spki`; `None` when they go together.
fn key_finding(key: Result<Vec<u8>, String>, spki: &[u8], n: &PairNames<'_>) -> Option<Finding> {
    let text = match key {
        Ok(t) => t,
        Err(why) => {
            return Some(finding(
                Severity::Critical,
                Kind::KeyUnreadable,
                format!("{}: {why}; {}", n.key, n.fix),
            ));
        }
    };
    match keys::check(&text, spki) {
        keys::Verdict::Matches => None,
        keys::Verdict::Differs => Some(finding(
            Severity::Critical,
            Kind::KeyMismatch,
            format!(
                "{} does not belong to {} (another key pair's key): {}; {}",
                n.key, n.public, n.breaks, n.fix
            ),
        )),
        keys::Verdict::Unreadable(why) => Some(finding(
            Severity::Critical,
            Kind::KeyUnreadable,
            format!("{} is not a usable private key ({why}); {}", n.key, n.fix),
        )),
    }
}

/// Reads a key file: its bytes, or why not; `None` when it is not there.
fn read_key(path: &Path) -> Option<Result<Vec<u8>, String>> {
    match std::fs::read(path) {
        Ok(b) => Some(Ok(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("cannot be read ({e})"))),
    }
}

/// Standard base64 (kubeconfig data fields), padding optional, whitespace
/// (folded YAML) ignored.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const STANDARD_PAD_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD_PAD_OPTIONAL.decode(compact).ok()
}

/// Residual time as kubeadm prints it (apimachinery's `HumanDuration`):
/// `45s`, `3h20m`, `9d`, `364d`, `2y30d`, `9y`, `<invalid>` once expired.
pub fn residual(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Everything read about one certificate file.
struct Read {
    cert: Cert,
    der: Option<Vec<u8>>,
}

fn read_cert(
    name: &str,
    path: PathBuf,
    ca: &str,
    der: Option<Vec<u8>>,
    now: SystemTime,
    warn: Duration,
) -> Read {
    let mut c = Cert {
        name: name.into(),
        path,
        present: der.is_some(),
        expires: None,
        residual_seconds: None,
        ca: ca.into(),
        externally_managed: false,
        problems: Vec::new(),
    };
    if let Some(d) = &der {
        match X509Certificate::from_der(d) {
            Ok((_, x)) => {
                let not_after = x.validity().not_after.timestamp();
                let now_s = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let left = not_after - now_s;
                c.expires = Some(crate::utc::rfc3339(
                    SystemTime::UNIX_EPOCH
                        + Duration::from_secs(u64::try_from(not_after.max(0)).unwrap_or(0)),
                ));
                c.residual_seconds = Some(left);
                let warn_s = i64::try_from(warn.as_secs()).unwrap_or(i64::MAX);
                let not_before = x.validity().not_before.timestamp();
                if not_before > now_s {
                    c.problems.push(finding(
                        Severity::Critical,
                        Kind::NotYetValid,
                        format!(
                            "not valid for another {} (a clock ahead where it was issued, or behind here)",
                            residual(not_before - now_s)
                        ),
                    ));
                }
                if left <= 0 {
                    c.problems
                        .push(finding(Severity::Critical, Kind::Expired, "expired"));
                } else if left <= warn_s {
                    c.problems.push(finding(
                        Severity::Warning,
                        Kind::Expiring,
                        format!("expires in {} (within the warning window)", residual(left)),
                    ));
                }
            }
            Err(e) => {
                c.present = false;
                c.problems.push(finding(
                    Severity::Critical,
                    Kind::Unreadable,
                    format!("not a readable certificate: {e}"),
                ));
            }
        }
    }
    Read { cert: c, der }
}

/// Whether `der` is signed by the CA certificate `ca_der`.
fn signed_by(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, x)), Ok((_, ca))) = (X509Certificate::from_der(der), X509Certificate::from_der(ca_der))
    else {
        return false;
    };
    x.verify_signature(Some(ca.public_key())).is_ok()
}

/// The hosts of URLs (no wildcard listen addresses).
fn url_hosts(urls: &[String]) -> Vec<String> {
    let mut v: Vec<String> = urls
        .iter()
        .filter_map(|u| {
            let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
            let hostport = rest.split('/').next()?;
            let host = if let Some(h) = hostport.strip_prefix('[') {
                h.split(']').next()?
            } else {
                hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
            };
            (!host.is_empty() && host != "0.0.0.0" && host != "::").then(|| host.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Checks every certificate and CA under `root` (`/etc/kubernetes/pki`,
/// `/etc/kubernetes/*.conf`), the etcd certificates' SANs against `etcd.yaml`
/// when it reads, each private key against its certificate (a kubeconfig's
/// client key against its client certificate, `sa.key` against `sa.pub`),
/// and the permissions of keys, kubeconfigs, pki dirs and the backups in
/// `backup_dirs` (paths on this machine).
pub fn check(root: &Root, warn: Duration, backup_dirs: &[PathBuf], now: SystemTime) -> Report {
    let pki = root.host("/etc/kubernetes/pki");
    let kube = root.host("/etc/kubernetes");
    let mut authorities = Vec::new();
    let mut ca_ders = std::collections::BTreeMap::new();
    for (name, file) in CAS {
        let path = pki.join(file);
        let der = std::fs::read(&path).ok().and_then(|t| first_pem_der(&t));
        let exists = crate::host::fs::exists(&path);
        let mut r = read_cert(name, path.clone(), "", der, now, warn);
        r.cert.externally_managed = r.cert.present && !crate::host::fs::exists(&path.with_extension("key"));
        if !exists {
            r.cert
                .problems
                .push(finding(Severity::Critical, Kind::Missing, "!MISSING!"));
        } else if r.der.is_none() {
            r.cert.problems.push(finding(
                Severity::Critical,
                Kind::Unreadable,
                "holds no certificate",
            ));
        }
        // A CA's key is optional (an external CA); when it is there it must be the CA's.
        if let (Some(spki), Some(key)) = (
            r.der.as_deref().and_then(keys::cert_public_key),
            read_key(&path.with_extension("key")),
        ) {
            let (crt, key_name) = (node_pki(file), node_pki(&file.replace(".crt", ".key")));
            let fix = format!(
                "restore the matching {key_name} from a backup of /etc/kubernetes/pki (kubeadm does not renew CAs: a new CA means reissuing every certificate it signed)"
            );
            let names = PairNames {
                key: &key_name,
                public: &crt,
                breaks: "nothing can be signed with this CA (renewals and joins fail)",
                fix: &fix,
            };
            r.cert.problems.extend(key_finding(key, &spki, &names));
        }
        if let Some(d) = r.der {
            ca_ders.insert(name, d);
        }
        authorities.push(r.cert);
    }
    let etcd = crate::node::Node::discover(root, None, &crate::host::etcd::Connection::default())
        .ok()
        .map(|n| n.etcd);
    let mut certificates = Vec::new();
    for (name, source, ca) in CERTS {
        // The certificate, and its private key: the `.key` beside it, or the kubeconfig's own.
        let (path, der, key) = match source {
            Source::Pem(f) => {
                let p = pki.join(f);
                let der = std::fs::read(&p).ok().and_then(|t| first_pem_der(&t));
                let key = read_key(&p.with_extension("key"));
                (p, der, key)
            }
            Source::Kubeconfig(f) => {
                let p = kube.join(f);
                let text = std::fs::read_to_string(&p).ok();
                let der = text.as_deref().and_then(|t| kubeconfig_cert(root, t));
                let key = text.as_deref().and_then(|t| kubeconfig_key(root, t));
                (p, der, key)
            }
        };
        let exists = crate::host::fs::exists(&path);
        let mut r = read_cert(name, path, ca, der, now, warn);
        let c = &mut r.cert;
        c.externally_managed = authorities.iter().any(|a| a.name == ca && a.externally_managed);
        if !exists {
            // super-admin.conf is written only on the node that ran `kubeadm init` (1.29 and later).
            let sev = if name == "super-admin.conf" {
                Severity::Note
            } else {
                Severity::Critical
            };
            c.problems.push(finding(sev, Kind::Missing, "!MISSING!"));
        } else if r.der.is_none() {
            c.problems.push(finding(
                Severity::Critical,
                Kind::Unreadable,
                match source {
                    Source::Pem(_) => "holds no certificate",
                    Source::Kubeconfig(_) => "holds no client certificate (kubeadm's kubeconfigs embed one)",
                },
            ));
        }
        if let (Some(d), Some(ca_der)) = (&r.der, ca_ders.get(ca)) {
            if !signed_by(d, ca_der) {
                c.problems.push(finding(
                    Severity::Critical,
                    Kind::Chain,
                    format!("not signed by {ca}"),
                ));
            }
        } else if r.der.is_some() {
            c.problems.push(finding(
                Severity::Critical,
                Kind::Chain,
                format!("its CA {ca} is missing"),
            ));
        }
        if let Some(spki) = r.der.as_deref().and_then(keys::cert_public_key) {
            c.problems.extend(leaf_key_finding(name, source, key, &spki));
        }
        if let (Some(d), Some(m)) = (&r.der, &etcd) {
            let want = match name {
                "etcd-server" => {
                    url_hosts(&[m.advertise_client_urls.clone(), m.listen_client_urls.clone()].concat())
                }
                "etcd-peer" => {
                    url_hosts(&[m.initial_advertise_peer_urls.clone(), m.listen_peer_urls.clone()].concat())
                }
                _ => Vec::new(),
            };
            let have = crate::host::etcd::sans(d);
            let missing: Vec<&String> = want.iter().filter(|h| !have.contains(h)).collect();
            if !missing.is_empty() {
                c.problems.push(finding(
                    Severity::Critical,
                    Kind::Sans,
                    format!(
                        "its SANs do not cover {} (from etcd.yaml); it has {}",
                        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        have.join(", ")
                    ),
                ));
            }
        }
        certificates.push(r.cert);
    }
    let keys = other_pairs(&pki);
    let permissions = audit(&pki, &kube, backup_dirs);
    let mut report = Report {
        certificates,
        authorities,
        keys,
        permissions,
        warn_days: warn.as_secs() / 86_400,
        ok: true,
        not_in_bundle: Vec::new(),
    };
    let bad = report
        .findings()
        .any(|f| f.severity == Severity::Critical || f.kind == Kind::Expiring);
    report.ok = !bad;
    report
}

/// A file under the pki dir as the node names it.
fn node_pki(file: &str) -> String {
    format!("/etc/kubernetes/pki/{file}")
}

/// The finding for a leaf certificate's private key (`key`: its bytes, why
/// they do not read, or `None` when there is none), checked against the
/// certificate's public key `spki`.
fn leaf_key_finding(
    name: &str,
    source: Source,
    key: Option<Result<Vec<u8>, String>>,
    spki: &[u8],
) -> Option<Finding> {
    let (key_name, crt) = match source {
        Source::Pem(f) => (node_pki(&f.replace(".crt", ".key")), node_pki(f)),
        Source::Kubeconfig(f) => (
            format!("the client key in /etc/kubernetes/{f}"),
            "its client certificate".to_string(),
        ),
    };
    let fix = match source {
        Source::Pem(_) => format!(
            "restore the matching {key_name} from a backup of /etc/kubernetes/pki, or issue a new pair with `kubeadm certs renew {name}`"
        ),
        Source::Kubeconfig(f) => format!(
            "issue a new pair with `kubeadm certs renew {name}`, or restore /etc/kubernetes/{f} from a backup"
        ),
    };
    let Some(key) = key else {
        return Some(finding(
            Severity::Critical,
            Kind::KeyMissing,
            format!("{key_name} is missing: the certificate cannot be used without it; {fix}"),
        ));
    };
    let names = PairNames {
        key: &key_name,
        public: &crt,
        breaks: "TLS with this pair fails",
        fix: &fix,
    };
    key_finding(key, spki, &names)
}

/// Key pairs in the pki dirs besides kubeadm's certificates: `sa.key` with
/// `sa.pub` (when both are there), and any other `X.key` with an `X.crt`.
fn other_pairs(pki: &Path) -> Vec<KeyProblem> {
    let listed: Vec<String> = CERTS
        .iter()
        .filter_map(|(_, s, _)| match s {
            Source::Pem(f) => Some((*f).to_string()),
            Source::Kubeconfig(_) => None,
        })
        .chain(CAS.iter().map(|(_, f)| (*f).to_string()))
        .collect();
    let mut out = Vec::new();
    for sub in ["", "etcd/"] {
        let Ok(rd) = std::fs::read_dir(pki.join(sub)) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| Path::new(n).extension().is_some_and(|x| x == "key"))
            .collect();
        names.sort();
        for n in names {
            let key_file = format!("{sub}{n}");
            let stem = key_file.trim_end_matches(".key");
            let (public_file, spki) = if key_file == "sa.key" {
                let p = "sa.pub".to_string();
                let spki = std::fs::read(pki.join(&p))
                    .ok()
                    .and_then(|t| keys::pem_public_key(&t));
                (p, spki)
            } else {
                let p = format!("{stem}.crt");
                if listed.contains(&p) {
                    continue;
                }
                let spki = std::fs::read(pki.join(&p))
                    .ok()
                    .and_then(|t| first_pem_der(&t))
                    .and_then(|d| keys::cert_public_key(&d));
                (p, spki)
            };
            let (Some(spki), Some(key)) = (spki, read_key(&pki.join(&key_file))) else {
                continue;
            };
            let (key_name, public_name) = (node_pki(&key_file), node_pki(&public_file));
            let (breaks, fix) = if key_file == "sa.key" {
                (
                    "service-account tokens signed with sa.key do not verify against sa.pub",
                    "restore both from a backup of /etc/kubernetes/pki, or copy them from another control-plane node (every control-plane node needs the same pair)".to_string(),
                )
            } else {
                (
                    "TLS with this pair fails",
                    format!("restore the matching {key_name} from a backup, or issue a new pair"),
                )
            };
            let names = PairNames {
                key: &key_name,
                public: &public_name,
                breaks,
                fix: &fix,
            };
            if let Some(f) = key_finding(key, &spki, &names) {
                out.push(KeyProblem {
                    key: pki.join(&key_file),
                    public: pki.join(&public_file),
                    finding: f,
                });
            }
        }
    }
    out
}

fn mode_of(md: &std::fs::Metadata) -> String {
    format!("{:04o}", md.mode() & 0o7777)
}

/// Keys, kubeconfigs, pki dirs and backups: who can read them.
fn audit(pki: &Path, kube: &Path, backup_dirs: &[PathBuf]) -> Vec<Permission> {
    let mut out = Vec::new();
    let mut push = |path: &Path, md: &std::fs::Metadata, severity: Severity, message: String| {
        out.push(Permission {
            path: path.to_path_buf(),
            mode: mode_of(md),
            uid: md.uid(),
            finding: finding(severity, Kind::Permission, message),
        });
    };
    // Secrets: private keys and kubeconfigs, 0600 and root's.
    let mut secrets: Vec<PathBuf> = Vec::new();
    for dir in [pki.to_path_buf(), pki.join("etcd")] {
        // Followed: a symlink's own mode says nothing.
        if let Ok(md) = std::fs::metadata(&dir)
            && md.mode() & 0o002 != 0
        {
            push(
                &dir,
                &md,
                Severity::Critical,
                "the pki dir is writable by every user".into(),
            );
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            secrets.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "key")),
            );
        }
    }
    if let Ok(rd) = std::fs::read_dir(kube) {
        secrets.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf")),
        );
    }
    secrets.sort();
    for p in secrets {
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        let m = md.mode() & 0o777;
        let etcd_ca = p.ends_with("etcd/ca.key");
        if m & 0o077 != 0 {
            push(
                &p,
                &md,
                Severity::Critical,
                if etcd_ca {
                    "etcd's CA key is readable by others: whoever reads it can read every Secret in the cluster (chmod 600)".into()
                } else {
                    format!("readable or writable by others (mode {m:04o}; chmod 600)")
                },
            );
        } else if md.uid() != 0 {
            push(
                &p,
                &md,
                Severity::Critical,
                format!("owned by uid {}, not root (chown root:root)", md.uid()),
            );
        } else if m != 0o600 {
            push(
                &p,
                &md,
                Severity::Warning,
                format!("mode {m:04o}, kubeadm writes 0600"),
            );
        }
    }
    // Backups: snapshots hold every Secret too.
    for d in backup_dirs {
        let Ok(md) = std::fs::metadata(d) else {
            continue;
        };
        if md.is_dir() && md.mode() & 0o007 != 0 {
            push(
                d,
                &md,
                Severity::Warning,
                "the backup dir is open to every user (chmod 700)".into(),
            );
        }
        for e in walkdir::WalkDir::new(d).max_depth(3).into_iter().flatten() {
            let name = e.file_name().to_string_lossy();
            if !e.file_type().is_file() || !(name.ends_with(".db") || name.ends_with(".db.age")) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            // An encrypted backup is safe to read; a plain one holds every Secret.
            if md.mode() & 0o077 != 0 && !name.ends_with(".age") {
                push(
                    e.path(),
                    &md,
                    Severity::Critical,
                    format!(
                        "a snapshot readable by others (mode {:04o}): it holds every Secret (chmod 600)",
                        md.mode() & 0o777
                    ),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_like_kubeadm() {
        assert_eq!(residual(-5), "<invalid>");
        assert_eq!(residual(3 * 3600), "3h");
        assert_eq!(residual(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(residual(10 * 86_400 - 5), "9d");
        assert_eq!(residual(5 * 86_400 + 4 * 3600), "5d4h");
        assert_eq!(residual(365 * 86_400 - 5), "364d");
        assert_eq!(residual(3650 * 86_400 - 5), "9y");
        assert_eq!(residual(3 * 365 * 86_400 + 30 * 86_400), "3y30d");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_hosts(&[
                "https://127.0.0.1:2379".into(),
                "https://10.0.0.11:2379".into(),
                "https://0.0.0.0:2379".into(),
                "https://[::1]:2379".into(),
                "https://etcd.example:2380".into(),
            ]),
            ["10.0.0.11", "127.0.0.1", "::1", "etcd.example"]
        );
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a$b").is_none());
        assert_eq!(base64_decode("aGVs\n bG8=").unwrap(), b"hello", "folded lines");
    }
}
