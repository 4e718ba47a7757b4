//! Whether a private key is the other half of a public key (a
//! swapped `etcd/server.key` read as clean, though etcd cannot serve TLS with
//! it). The key is parsed by rustls' ring provider (PKCS#1, PKCS#8 and SEC1
//! PEM; RSA, ECDSA P-256/P-384, Ed25519), which derives its public key; the
//! two are compared by algorithm, curve and key bits, so a certificate's
//! encoding of the same key (RSA's NULL parameters or not) is no mismatch.

use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// What a private key says about a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The same key pair.
    Matches,
    /// Another key (of this type, or another type altogether).
    Differs,
    /// The key (or the public key) does not read; why, in words.
    Unreadable(String),
}

/// The public key (SubjectPublicKeyInfo DER) a certificate carries.
pub(super) fn cert_public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, x) = X509Certificate::from_der(cert_der).ok()?;
    Some(x.public_key().raw.to_vec())
}

/// The public key of a `PUBLIC KEY` PEM (`sa.pub`).
pub(super) fn pem_public_key(text: &[u8]) -> Option<Vec<u8>> {
    SubjectPublicKeyInfoDer::from_pem_slice(text)
        .ok()
        .map(|d| d.as_ref().to_vec())
}

/// Whether the PEM private key in `key_pem` belongs to the public key `spki`.
pub(super) fn check(key_pem: &[u8], spki: &[u8]) -> Verdict {
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(key_pem);
            return Verdict::Unreadable(if text.contains("ENCRYPTED PRIVATE KEY") {
                "an encrypted private key: etcd and the API server read only unencrypted keys".into()
            } else if key_pem.iter().all(u8::is_ascii_whitespace) {
                "empty: no private key in it".into()
            } else {
                "no PEM private key in it (RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY)".into()
            });
        }
        Err(e) => return Verdict::Unreadable(format!("not a readable PEM private key: {e}")),
    };
    let Some(derived) = derive_public(&key) else {
        return Verdict::Unreadable(
            "not a readable private key (RSA, ECDSA P-256/P-384 or Ed25519 in PKCS#1, PKCS#8 or SEC1)".into(),
        );
    };
    match same_key(&derived, spki) {
        Some(true) => Verdict::Matches,
        Some(false) => Verdict::Differs,
        None => Verdict::Unreadable("its public counterpart does not read".into()),
    }
}

/// The public key (SubjectPublicKeyInfo DER) of a private key.
fn derive_public(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    if let Some(spki) = rustls::crypto::ring::sign::any_supported_type(key)
        .ok()
        .and_then(|k| k.public_key().map(|p| p.as_ref().to_vec()))
    {
        return Some(spki);
    }
    // RSA keys ring refuses (under 2048 bits, over 8192): the RSA crate reads them.
    let rsa = match key {
        PrivateKeyDer::Pkcs1(k) => rsa::PrivateKey::from_pkcs1_der(k.secret_pkcs1_der()).ok()?,
        PrivateKeyDer::Pkcs8(k) => rsa::PrivateKey::from_pkcs8_der(k.secret_pkcs8_der()).ok()?,
        _ => return None,
    };
    Some(rsa.to_public_key().to_public_key_der().ok()?.as_bytes().to_vec())
}

/// Whether two SubjectPublicKeyInfos hold the same key: algorithm, EC curve
/// (the only parameter that names a key's group) and key bits. `None` when
/// either does not read.
fn same_key(a: &[u8], b: &[u8]) -> Option<bool> {
    let (_, a) = SubjectPublicKeyInfo::from_der(a).ok()?;
    let (_, b) = SubjectPublicKeyInfo::from_der(b).ok()?;
    let curve = |s: &SubjectPublicKeyInfo<'_>| {
        s.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
    };
    Some(
        a.algorithm.algorithm == b.algorithm.algorithm
            && curve(&a) == curve(&b)
            && a.subject_public_key.data == b.subject_public_key.data,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
    use rsa::pkcs1::{EncodeRsaPrivateKey as _, LineEnding};
    use rsa::pkcs8::EncodePrivateKey as _;
    use rustls::pki_types::CertificateDer;

    /// openssl's own SEC1 form (`openssl ecparam -name prime256v1 -genkey`):
    /// an `EC PARAMETERS` block first, the curve inside the key, and its
    /// self-signed certificate (`openssl req -new -x509`).
    const OPENSSL_SEC1_KEY: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEqJAg82BFxub127Sr6Hhy6KZdRDj8cocV+/Sf/T5kARoAoGCCqGSM49
AwEHoUQDQgAE2HhVCBAX4gho4YXPbD0c+SAAHG0mdG+YfugVnrGcJ+/RCw9vUL9S
6h0w+5PrgBgSOOaq7jUfe868tpR8BNbP0g==
-----END EC PRIVATE KEY-----
";
    const OPENSSL_SEC1_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBdTCCARugAwIBAgIUcSEwroEQS7q+jC2KlGaN0o7GjzowCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEc2VjMTAgFw0yNjEyMDcwMjI3MDBaGA8yMTI2MTExMzAyMjcw
MFowDzENMAsGA1UEAwwEc2VjMTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNh4
VQgQF+IIaOGFz2w9HPkgABxtJnRvmH7oFZ6xnCfv0QsPb1C/UuodMPuT64AYEjjm
qu41H3vOvLaUfATWz9KjUzBRMB0GA1UdDgQWBBQhJmOm0DRAOJP+MeA+oUpPDdUZ
/jAfBgNVHSMEGDAWgBQhJmOm0DRAOJP+MeA+oUpPDdUZ/jAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIAtNeM6wyKrA7VZV2xvo8MGB9uDV0L+LLsKU
m8Lp1apHAiEA0ReCcEN+N6YlafRW9CbH8r+bEvD9VhGMU9QPj8DbvbA=
-----END CERTIFICATE-----
";

    fn pem(label: &str, der: &[u8]) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// The SEC1 `ECPrivateKey` a PKCS#8 EC key wraps (its privateKey OCTET STRING).
    fn sec1_of(pkcs8: &[u8]) -> Vec<u8> {
        use x509_parser::der_parser::der::parse_der;
        let (_, seq) = parse_der(pkcs8).unwrap();
        let items = seq.as_sequence().unwrap();
        items[2].as_slice().unwrap().to_vec()
    }

    /// A self-signed certificate for `key` (its DER).
    fn cert_for(key: &KeyPair) -> Vec<u8> {
        CertificateParams::new(vec!["k.example".to_string()])
            .unwrap()
            .self_signed(key)
            .unwrap()
            .der()
            .to_vec()
    }

    /// ECDSA P-256 and P-384, PKCS#8 and SEC1: its own certificate matches,
    /// another key of the same curve differs, a key of the other curve differs.
    #[test]
    fn ecdsa_keys_pkcs8_and_sec1() {
        for (alg, other) in [
            (&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384),
            (&PKCS_ECDSA_P384_SHA384, &PKCS_ECDSA_P256_SHA256),
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let spki = cert_public_key(&cert_for(&key)).unwrap();
            let pkcs8 = key.serialize_pem();
            let sec1 = pem("EC PRIVATE KEY", &sec1_of(key.serialized_der()));
            let same_curve = KeyPair::generate_for(alg).unwrap();
            let other_curve = KeyPair::generate_for(other).unwrap();
            assert_eq!(check(pkcs8.as_bytes(), &spki), Verdict::Matches);
            assert_eq!(check(sec1.as_bytes(), &spki), Verdict::Matches, "{sec1}");
            assert_eq!(
                check(same_curve.serialize_pem().as_bytes(), &spki),
                Verdict::Differs
            );
            let sec1_other = pem("EC PRIVATE KEY", &sec1_of(same_curve.serialized_der()));
            assert_eq!(check(sec1_other.as_bytes(), &spki), Verdict::Differs);
            assert_eq!(
                check(other_curve.serialize_pem().as_bytes(), &spki),
                Verdict::Differs
            );
        }
    }

    /// openssl's SEC1 file (EC PARAMETERS block, curve in the key) reads and matches its certificate.
    #[test]
    fn openssl_sec1_key_with_parameters_block() {
        let der = CertificateDer::from_pem_slice(OPENSSL_SEC1_CERT.as_bytes()).unwrap();
        let spki = cert_public_key(der.as_ref()).unwrap();
        assert_eq!(check(OPENSSL_SEC1_KEY.as_bytes(), &spki), Verdict::Matches);
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        assert_eq!(check(other.serialize_pem().as_bytes(), &spki), Verdict::Differs);
    }

    /// Ed25519 (PKCS#8): its own certificate matches, another Ed25519 key and an ECDSA key differ.
    #[test]
    fn ed25519_keys() {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let spki = cert_public_key(&cert_for(&key)).unwrap();
        assert_eq!(check(key.serialize_pem().as_bytes(), &spki), Verdict::Matches);
        let other = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        assert_eq!(check(other.serialize_pem().as_bytes(), &spki), Verdict::Differs);
        let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        assert_eq!(check(ec.serialize_pem().as_bytes(), &spki), Verdict::Differs);
    }

    /// RSA-2048, PKCS#1 (kubeadm's form) and PKCS#8, against a certificate and
    /// a `PUBLIC KEY` PEM (`sa.pub`); another RSA key differs; an RSA-1024 key
    /// (which ring refuses) still reads.
    #[test]
    fn rsa_keys_pkcs1_and_pkcs8() {
        let k = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let pkcs1 = k.to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs8 = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        let signer = KeyPair::from_pem(&pkcs8).unwrap();
        let spki = cert_public_key(&cert_for(&signer)).unwrap();
        assert_eq!(check(pkcs1.as_bytes(), &spki), Verdict::Matches);
        assert_eq!(check(pkcs8.as_bytes(), &spki), Verdict::Matches);
        let public = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let sa_pub = pem_public_key(public.as_bytes()).unwrap();
        assert_eq!(check(pkcs1.as_bytes(), &sa_pub), Verdict::Matches);
        let other = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let other_pem = other.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(check(other_pem.as_bytes(), &spki), Verdict::Differs);
        assert_eq!(check(other_pem.as_bytes(), &sa_pub), Verdict::Differs);
        let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let small_pub = small.to_public_key().to_public_key_der().unwrap();
        let small_pem = small.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(
            check(small_pem.as_bytes(), small_pub.as_bytes()),
            Verdict::Matches
        );
        assert_eq!(check(small_pem.as_bytes(), &spki), Verdict::Differs);
    }

    /// Garbage, an empty file, a certificate where the key should be, a PEM
    /// key whose body is cut, an encrypted key: each a reason, never a panic.
    #[test]
    fn unreadable_keys_say_why() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = cert_public_key(&cert_for(&key)).unwrap();
        let reason = |text: &[u8]| match check(text, &spki) {
            Verdict::Unreadable(why) => why,
            v => panic!("{v:?} for {:?}", String::from_utf8_lossy(text)),
        };
        assert!(reason(b"\x00\xffgarbage").contains("no PEM private key"));
        assert!(reason(b"").contains("empty"));
        assert!(reason(OPENSSL_SEC1_CERT.as_bytes()).contains("no PEM private key"));
        let cut = pem("PRIVATE KEY", &key.serialized_der()[..40]);
        assert!(
            reason(cut.as_bytes()).contains("not a readable private key"),
            "{cut}"
        );
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(reason(encrypted.as_bytes()).contains("encrypted"));
        assert_eq!(
            check(key.serialize_pem().as_bytes(), b"not a public key"),
            Verdict::Unreadable("its public counterpart does not read".into())
        );
    }
}
