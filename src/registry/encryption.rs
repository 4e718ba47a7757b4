//! Values kube-apiserver encrypted at rest, read with its encryption
//! configuration (`--encryption-provider-config`, an
//! `apiserver.config.k8s.io/v1` `EncryptionConfiguration`).
//!
//! A value stored as `k8s:enc:<provider>:v1:<key name>:<data>` is opened as
//! kube-apiserver opens it:
//! - `aescbc`: `data` is a 16-byte IV and AES-CBC ciphertext with PKCS#7
//!   padding;
//! - `aesgcm`: a 12-byte nonce and AES-GCM ciphertext with its tag, the etcd
//!   key as the additional data;
//! - `secretbox`: a 24-byte nonce, then NaCl's secretbox (XSalsa20-Poly1305,
//!   the 16-byte tag first).
//!
//! KMS values (`kms`) need the KMS plugin and are only named, never read.
//! A key is looked up by provider and name in every resource's providers;
//! what cannot be opened says why and shows none of its bytes.

use std::path::Path;

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use anyhow::{Context, Result, bail};
use base64::Engine as _;

/// The keys of an encryption configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    keys: Vec<Key>,
}

#[derive(Clone, PartialEq, Eq)]
struct Key {
    provider: String,
    name: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({} bytes)", self.provider, self.name, self.secret.len())
    }
}

/// The providers whose keys this reads.
const PROVIDERS: &[&str] = &["aescbc", "aesgcm", "secretbox"];

impl Keys {
    /// Reads the configuration at `path`.
    ///
    /// # Errors
    /// An unreadable file, one that is not an `EncryptionConfiguration`, or a
    /// key that is not base64 of a length its provider takes.
    pub fn read(path: &Path) -> Result<Keys> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
            .with_context(|| format!("reading the encryption configuration {}", path.display()))?;
        Keys::parse(&text)
            .with_context(|| format!("{} is not a usable EncryptionConfiguration", path.display()))
    }

    /// Reads a configuration's text.
    ///
    /// # Errors
    /// As [`Keys::read`].
    pub fn parse(text: &str) -> Result<Keys> {
        let doc: serde_json::Value = yaml_serde::from_str(text).context("not YAML")?;
        if doc["kind"] != "EncryptionConfiguration" {
            bail!("its kind is {}, not EncryptionConfiguration", doc["kind"]);
        }
        let mut keys = Vec::new();
        for res in doc["resources"].as_array().into_iter().flatten() {
            for p in res["providers"].as_array().into_iter().flatten() {
                for provider in PROVIDERS {
                    for k in p[*provider]["keys"].as_array().into_iter().flatten() {
                        let name = k["name"].as_str().context("a key without a name")?.to_string();
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(k["secret"].as_str().unwrap_or_default().trim())
                            .with_context(|| format!("{provider} key {name}: its secret is not base64"))?;
                        let ok = match *provider {
                            "secretbox" => secret.len() == 32,
                            _ => matches!(secret.len(), 16 | 24 | 32),
                        };
                        if !ok {
                            bail!(
                                "{provider} key {name}: {} bytes is not a key length it takes",
                                secret.len()
                            );
                        }
                        keys.push(Key {
                            provider: (*provider).to_string(),
                            name,
                            secret,
                        });
                    }
                }
            }
        }
        if keys.is_empty() {
            bail!("it holds no aescbc, aesgcm or secretbox key (KMS keys live in the KMS plugin)");
        }
        Ok(Keys { keys })
    }

    /// Opens `data` sealed by `provider` with the key `name`, for the etcd key
    /// `etcd_key`.
    ///
    /// # Errors
    /// No such key, or data that does not open with it (another key under
    /// the same name, or damaged bytes).
    pub fn open(&self, provider: &str, name: &str, etcd_key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        let Some(key) = self
            .keys
            .iter()
            .find(|k| k.provider == provider && k.name == name)
        else {
            bail!("the encryption configuration has no {provider} key named {name}");
        };
        let opened = match provider {
            "aescbc" => aescbc(&key.secret, data),
            "aesgcm" => aesgcm(&key.secret, etcd_key, data),
            "secretbox" => secretbox(&key.secret, data),
            other => bail!("{other} values cannot be read here"),
        };
        opened.with_context(|| {
            format!("{provider} key {name} does not open it (another key of that name, or damaged bytes)")
        })
    }
}

fn aescbc(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        bail!("{} bytes is not an IV and whole AES blocks", data.len());
    }
    let (iv, ct) = data.split_at(16);
    let out = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)?.decrypt_padded_vec_mut::<Pkcs7>(ct),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)?.decrypt_padded_vec_mut::<Pkcs7>(ct),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)?.decrypt_padded_vec_mut::<Pkcs7>(ct),
    };
    out.map_err(|_| anyhow::anyhow!("the padding is wrong"))
}

fn aesgcm(key: &[u8], etcd_key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < 12 + 16 {
        bail!("{} bytes is shorter than a nonce and a tag", data.len());
    }
    let (nonce, ct) = data.split_at(12);
    let payload = Payload {
        msg: ct,
        aad: etcd_key,
    };
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let out = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)?.decrypt(nonce, payload),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)?
            .decrypt(nonce, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)?.decrypt(nonce, payload),
    };
    out.map_err(|_| anyhow::anyhow!("the tag does not match"))
}

fn secretbox(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    use crypto_secretbox::aead::AeadInPlace as _;
    if data.len() < 24 + 16 {
        bail!("{} bytes is shorter than a nonce and a tag", data.len());
    }
    let (nonce, sealed) = data.split_at(24);
    let (tag, ct) = sealed.split_at(16);
    let mut buf = ct.to_vec();
    crypto_secretbox::XSalsa20Poly1305::new_from_slice(key)?
        .decrypt_in_place_detached(nonce.into(), b"", &mut buf, tag.into())
        .map_err(|_| anyhow::anyhow!("the tag does not match"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: g1
              secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
      - secretbox:
          keys:
            - name: s1
              secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
      - aescbc:
          keys:
            - name: key1
              secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
      - identity: {}
";

    fn key32() -> Vec<u8> {
        (0u8..32).collect()
    }

    /// aescbc as kube-apiserver writes it: the IV, then AES-256-CBC with
    /// PKCS#7 padding (OpenSSL seals it in `tests/registry.rs`); another key
    /// of the same name, an unknown name and a cut value are refused.
    #[test]
    fn aescbc_opens_iv_and_padded_blocks() {
        use aes::cipher::BlockEncryptMut as _;
        let keys = Keys::parse(CONFIG).unwrap();
        let iv = [7u8; 16];
        let sealed = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key32(), &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(b"k8s\0 a secret");
        let mut data = iv.to_vec();
        data.extend(&sealed);
        let opened = keys
            .open("aescbc", "key1", b"/registry/secrets/a/b", &data)
            .unwrap();
        assert_eq!(opened, b"k8s\0 a secret");
        let other = Keys::parse(&CONFIG.replace(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=",
        ))
        .unwrap();
        assert!(other.open("aescbc", "key1", b"k", &data).is_err());
        assert!(
            keys.open("aescbc", "nope", b"k", &data)
                .unwrap_err()
                .to_string()
                .contains("no aescbc key named nope")
        );
        assert!(keys.open("aescbc", "key1", b"k", &data[..20]).is_err());
    }

    /// aesgcm binds the etcd key; secretbox is NaCl's layout (tag first).
    #[test]
    fn aesgcm_and_secretbox_round_trip() {
        use crypto_secretbox::aead::AeadInPlace as _;
        let keys = Keys::parse(CONFIG).unwrap();
        let nonce = [3u8; 12];
        let sealed = aes_gcm::Aes256Gcm::new_from_slice(&key32())
            .unwrap()
            .encrypt(
                aes_gcm::Nonce::from_slice(&nonce),
                Payload {
                    msg: b"plain",
                    aad: b"/registry/secrets/ns/s",
                },
            )
            .unwrap();
        let mut data = nonce.to_vec();
        data.extend(sealed);
        assert_eq!(
            keys.open("aesgcm", "g1", b"/registry/secrets/ns/s", &data)
                .unwrap(),
            b"plain"
        );
        assert!(
            keys.open("aesgcm", "g1", b"/registry/secrets/ns/other", &data)
                .is_err(),
            "moved to another key"
        );
        let n24 = [5u8; 24];
        let mut buf = b"boxed".to_vec();
        let tag = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&key32())
            .unwrap()
            .encrypt_in_place_detached((&n24).into(), b"", &mut buf)
            .unwrap();
        let mut data = n24.to_vec();
        data.extend(tag.as_slice());
        data.extend(&buf);
        assert_eq!(keys.open("secretbox", "s1", b"k", &data).unwrap(), b"boxed");
        data[30] ^= 1;
        assert!(keys.open("secretbox", "s1", b"k", &data).is_err());
    }

    #[test]
    fn configurations_that_cannot_serve_are_refused() {
        assert!(Keys::parse("kind: Pod\n").is_err());
        let kms_only = "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          name: vault\n      - identity: {}\n";
        assert!(
            Keys::parse(kms_only)
                .unwrap_err()
                .to_string()
                .contains("no aescbc")
        );
        let short = CONFIG.replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAEC");
        assert!(Keys::parse(&short).is_err());
        let debug = format!("{:?}", Keys::parse(CONFIG).unwrap());
        assert!(!debug.contains("AAEC") && debug.contains("32 bytes"), "{debug}");
    }
}
