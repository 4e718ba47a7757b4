//! Encrypted snapshots in the age format (<https://age-encryption.org/v1>),
//! so `age -d` or `rage -d` decrypts a backup without this tool: sealing a
//! file to X25519 recipients (`age1…`), and unsealing one with the
//! identities in an identity file (what `age-keygen` writes). The payload is
//! authenticated chunk by chunk: a flipped byte or a cut file fails to
//! unseal, it never yields wrong plaintext.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};

use crate::exit::Fail;

/// How every age file begins.
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Bytes read or written per step (age's own chunk size).
const CHUNK: usize = 64 * 1024;

/// Whether the file at `path` is an age file (by its first line).
pub fn is_sealed(path: &Path) -> bool {
    let mut b = [0u8; MAGIC.len()];
    File::open(path).and_then(|mut f| f.read_exact(&mut b)).is_ok() && b == MAGIC
}

/// An X25519 recipient, checked.
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl Recipient {
    /// The `age1…` form.
    pub fn text(&self) -> String {
        self.0.to_string()
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// Parses `--encrypt-to` values: each an `age1…` recipient, or the path of a
/// recipients file (one per line, `#` comments), as `age -R` reads.
pub fn recipients(given: &[String]) -> Result<Vec<Recipient>> {
    let mut out = Vec::new();
    for g in given {
        let g = g.trim();
        if g.starts_with("age1") {
            out.push(parse_recipient(g, None)?);
            continue;
        }
        let path = Path::new(g);
        let text = std::fs::read_to_string(path).map_err(|e| {
            Fail::before_change(
                format!("--encrypt-to {g}: neither an age1… recipient nor a readable recipients file ({e})"),
                "pass the public key age-keygen printed (age1…), or a file of them",
            )
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            out.push(parse_recipient(line, Some(path))?);
        }
    }
    if out.is_empty() {
        return Err(Fail::before_change(
            "--encrypt-to names no recipient",
            "pass the public key age-keygen printed (age1…)",
        )
        .into());
    }
    Ok(out)
}

fn parse_recipient(s: &str, file: Option<&Path>) -> Result<Recipient> {
    age::x25519::Recipient::from_str(s).map(Recipient).map_err(|e| {
        let from = file.map(|f| format!(" (in {})", f.display())).unwrap_or_default();
        Fail::before_change(
            format!("{s:.20}…{from} is not an age X25519 recipient: {e}"),
            "pass the public key age-keygen printed (age1…); ssh keys and passphrases are not taken for backups",
        )
        .into()
    })
}

/// What sealing or unsealing wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub size: u64,
    /// sha256 of what was written, hex.
    pub sha256: String,
}

/// A writer that hashes and counts what goes through it.
pub(super) struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `from` into `to` in chunks, calling `progress` with the bytes read so far.
pub(super) fn pump(
    from: &mut dyn Read,
    to: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    // Test hook: slow encryption and decryption, so a test can signal this
    // process while a file is half written. Never set in normal use.
    let delay = std::env::var("ETCD_RESCUE_TEST_AGE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    loop {
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        done += n as u64;
        progress(done);
    }
}

/// Encrypts `src` to `recipients` into the new file `dst` (mode 0600),
/// fsynced. On failure `dst` is removed. Returns what `dst` holds.
pub fn seal(
    src: &Path,
    dst: &Path,
    recipients: &[Recipient],
    progress: &mut dyn FnMut(u64),
) -> Result<Written> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    write_new(dst, |hashed| {
        let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as &dyn age::Recipient))
            .context("setting up the encryption")?;
        let mut w = enc.wrap_output(hashed)?;
        pump(&mut input, &mut w, progress).with_context(|| format!("encrypting {}", src.display()))?;
        w.finish()?;
        Ok(())
    })
}

/// Encrypts what `fill` writes to `recipients` into the new file `dst`
/// (mode 0600) as it is written, nothing plain on disk; fsynced, removed
/// again when anything fails. Returns what `dst` holds.
pub fn seal_stream(
    dst: &Path,
    recipients: &[Recipient],
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Written> {
    write_new(dst, |hashed| {
        let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as &dyn age::Recipient))
            .context("setting up the encryption")?;
        let mut w = enc.wrap_output(hashed)?;
        fill(&mut w)?;
        w.finish()?;
        Ok(())
    })
}

/// Decrypts the age file `src` with the identities in `identity` into
/// memory, refusing one whose plaintext is larger than `limit` bytes. A
/// wrong identity, a damaged or a cut file fails as [`unseal`] does.
pub fn unseal_to_memory(src: &Path, identity: &Path, limit: u64) -> Result<Vec<u8>> {
    let r = open_sealed(
        src,
        identity,
        "pass a file encrypted to an age recipient (etcd-rescue backup --encrypt-to writes one)".into(),
    )?;
    let mut out = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| damaged(src, &e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(Fail::before_change(
            format!("{} holds more than {limit} bytes once decrypted", src.display()),
            "pass the node bundle `backup --with-node-files` wrote (snapshot-<stamp>.node.tar.age)",
        )
        .into());
    }
    Ok(out)
}

/// Writes the new file `dst` (mode 0600) through `fill`, hashing and
/// counting what goes in, fsynced; removed again when anything fails.
pub(super) fn write_new(
    dst: &Path,
    fill: impl FnOnce(&mut Hashing<BufWriter<File>>) -> Result<()>,
) -> Result<Written> {
    let out = crate::host::fs::create_private(dst)?;
    let result = (|| -> Result<Written> {
        let mut hashed = Hashing {
            inner: BufWriter::with_capacity(CHUNK, out.try_clone()?),
            hash: sha2::Digest::new(),
            size: 0,
        };
        fill(&mut hashed)?;
        hashed.flush()?;
        out.sync_all()?;
        Ok(Written {
            size: hashed.size,
            sha256: crate::hex::hex(&sha2::Digest::finalize(hashed.hash)),
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// The identities in an identity file (`age-keygen` output: `AGE-SECRET-KEY-1…` lines).
fn identities(file: &Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let f = File::open(file).map_err(|e| {
        Fail::before_change(
            format!("cannot read the identity file {}: {e}", file.display()),
            "pass the file age-keygen wrote (AGE-SECRET-KEY-1… lines) with --identity",
        )
    })?;
    let ids = age::IdentityFile::from_buffer(BufReader::new(f))
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .map_err(|e| {
            Fail::before_change(
                format!("{} is not an age identity file: {e}", file.display()),
                "pass the file age-keygen wrote (AGE-SECRET-KEY-1… lines) with --identity",
            )
        })?;
    if ids.is_empty() {
        return Err(Fail::before_change(
            format!("{} holds no identity", file.display()),
            "pass the file age-keygen wrote (AGE-SECRET-KEY-1… lines) with --identity",
        )
        .into());
    }
    Ok(ids)
}

/// Decrypts the age file `src` with the identities in `identity` into the
/// new file `dst` (mode 0600), fsynced. On failure (no matching identity, a
/// damaged or cut file) `dst` is removed. Returns what `dst` holds.
pub fn unseal(src: &Path, dst: &Path, identity: &Path, progress: &mut dyn FnMut(u64)) -> Result<Written> {
    let mut r = open_sealed(
        src,
        identity,
        format!(
            "decrypt it first (age -d -o snapshot.db {}) and pass the result",
            src.display()
        ),
    )?;
    write_new(dst, |hashed| {
        pump(&mut r, hashed, progress).map_err(|e| damaged(src, &e.to_string()))?;
        Ok(())
    })
}

/// The plaintext of the age file `src`, decrypted with the identities in
/// `identity` as it is read. A file encrypted with a passphrase is refused
/// with `passphrase_next` as the next step; no matching identity names the
/// identity file; anything else is [`damaged`].
fn open_sealed(src: &Path, identity: &Path, passphrase_next: String) -> Result<impl Read> {
    let ids = identities(identity)?;
    let input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let dec = age::Decryptor::new_buffered(BufReader::with_capacity(CHUNK, input))
        .map_err(|e| damaged(src, &e.to_string()))?;
    if dec.is_scrypt() {
        return Err(Fail::before_change(
            format!("{} is encrypted with a passphrase", src.display()),
            passphrase_next,
        )
        .into());
    }
    dec.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Fail::before_change(
                format!("no identity in {} can decrypt {}", identity.display(), src.display()),
                "pass the identity whose recipient the backup was encrypted to (its sidecar lists the recipients)",
            )
            .into(),
            e => damaged(src, &e.to_string()),
        })
}

/// An age file that does not decrypt whole: cut, or changed since it was written.
fn damaged(src: &Path, why: &str) -> anyhow::Error {
    Fail::problem(
        format!("{} does not decrypt: {why} (damaged or cut short)", src.display()),
        "restore from another backup; `age -d` on this one fails the same way",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn key(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
        let id = age::x25519::Identity::generate();
        let p = dir.join(name);
        std::fs::write(&p, format!("# test key\n{}\n", id.to_string().expose_secret())).unwrap();
        (p, id.to_public().to_string())
    }

    /// Round trip, to two recipients; the wrong key, a flipped byte and a cut
    /// file each fail and leave no output.
    #[test]
    fn seal_and_unseal() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&plain, &data).unwrap();
        let (k1, r1) = key(d.path(), "k1");
        let (k2, r2) = key(d.path(), "k2");
        let (k3, _) = key(d.path(), "k3");
        let rs = recipients(&[r1, r2]).unwrap();
        let sealed = d.path().join("s.age");
        let w = seal(&plain, &sealed, &rs, &mut |_| {}).unwrap();
        assert!(is_sealed(&sealed) && !is_sealed(&plain));
        assert_eq!(w.size, std::fs::metadata(&sealed).unwrap().len());
        for k in [&k1, &k2] {
            let out = d.path().join("out");
            let u = unseal(&sealed, &out, k, &mut |_| {}).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), data);
            assert_eq!(u.size, data.len() as u64);
            std::fs::remove_file(&out).unwrap();
        }
        let out = d.path().join("out");
        let e = unseal(&sealed, &out, &k3, &mut |_| {}).unwrap_err();
        assert!(format!("{e:#}").contains("no identity in"), "{e:#}");
        assert!(!out.exists());
        let mut bytes = std::fs::read(&sealed).unwrap();
        let n = bytes.len();
        bytes[n - 1000] ^= 1;
        let flipped = d.path().join("flipped.age");
        std::fs::write(&flipped, &bytes).unwrap();
        let e = unseal(&flipped, &out, &k1, &mut |_| {}).unwrap_err();
        assert!(format!("{e:#}").contains("does not decrypt"), "{e:#}");
        assert!(!out.exists());
        let cut = d.path().join("cut.age");
        std::fs::write(&cut, &std::fs::read(&sealed).unwrap()[..n - 70_000]).unwrap();
        let e = unseal(&cut, &out, &k1, &mut |_| {}).unwrap_err();
        assert!(format!("{e:#}").contains("does not decrypt"), "{e:#}");
        assert!(!out.exists());
    }

    /// Recipients from a file with comments; a bad one names itself; an output that exists is never overwritten.
    #[test]
    fn recipients_and_no_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let (_, r1) = key(d.path(), "k1");
        let f = d.path().join("recipients.txt");
        std::fs::write(&f, format!("# ops\n\n{r1}\n")).unwrap();
        assert_eq!(recipients(&[f.display().to_string()]).unwrap().len(), 1);
        let e = recipients(&["age1notakey".into()]).unwrap_err();
        assert!(
            format!("{e:#}").contains("is not an age X25519 recipient"),
            "{e:#}"
        );
        let e = recipients(&["/nonexistent/r.txt".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("neither an age1"), "{e:#}");
        let src = d.path().join("src");
        std::fs::write(&src, b"x").unwrap();
        let dst = d.path().join("dst");
        std::fs::write(&dst, b"keep").unwrap();
        assert!(seal(&src, &dst, &recipients(&[r1]).unwrap(), &mut |_| {}).is_err());
        assert_eq!(std::fs::read(&dst).unwrap(), b"keep");
    }
}
