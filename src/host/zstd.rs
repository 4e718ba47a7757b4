//! zstd compression of backups, streamed: `backup --compress zstd` writes
//! `snapshot-<stamp>.db.zst` (`zstd -d` decompresses it without this tool),
//! and every reader decompresses it into a plain snapshot first.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};

use super::age::{Written, pump, write_new};
use crate::exit::Fail;

/// The bytes a zstd frame starts with.
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Whether the file at `path` starts like a zstd frame.
pub fn is_compressed(path: &Path) -> bool {
    let mut b = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut b)).is_ok() && b == MAGIC
}

/// Compresses `src` at `level` into the new file `dst` (mode 0600), fsynced;
/// removed again on failure. Returns what `dst` holds.
pub fn compress(src: &Path, dst: &Path, level: i32, progress: &mut dyn FnMut(u64)) -> Result<Written> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let size = input
        .metadata()
        .with_context(|| format!("reading {}", src.display()))?
        .len();
    write_new(dst, |hashed| {
        let mut enc = zstd::stream::write::Encoder::new(hashed, level).context("setting up zstd")?;
        // The size in the frame header: a reader knows the room it needs
        // before it writes a byte, with or without the sidecar; and a checksum
        // of the content in the frame, which `zstd -t` checks.
        enc.set_pledged_src_size(Some(size)).context("setting up zstd")?;
        enc.include_checksum(true).context("setting up zstd")?;
        // Both cores: a 1.2 GB snapshot compresses in about half the time.
        let _ = enc.multithread(2);
        pump(&mut input, &mut enc, progress).with_context(|| format!("compressing {}", src.display()))?;
        enc.finish()?;
        Ok(())
    })
}

/// The size of what the zstd file at `path` decompresses to, when its
/// first frame's header says (this module's files always do).
pub fn content_size(path: &Path) -> Option<u64> {
    let mut head = [0u8; 18];
    let mut f = File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    zstd::zstd_safe::get_frame_content_size(&head[..n]).ok().flatten()
}

/// Decompresses the zstd file `src` into the new file `dst` (mode 0600),
/// fsynced; removed again when `src` is damaged or cut. Returns what `dst` holds.
pub fn decompress(src: &Path, dst: &Path, progress: &mut dyn FnMut(u64)) -> Result<Written> {
    let input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, input))
        .with_context(|| format!("reading {}", src.display()))?;
    write_new(dst, |hashed| {
        pump(&mut dec, hashed, progress).map_err(|e| {
            anyhow::Error::from(Fail::problem(
                format!(
                    "{} does not decompress: {e} (damaged or cut short)",
                    src.display()
                ),
                "restore from another backup; `zstd -t` on this one fails the same way",
            ))
        })?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip gives the same bytes; the file is known by its magic; a
    /// cut file is a damaged backup (exit 1) and leaves no output behind.
    #[test]
    fn round_trip_and_a_cut_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("snap.db");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 97) as u8).collect();
        std::fs::write(&plain, &data).unwrap();
        let packed = dir.path().join("snap.db.zst");
        let written = compress(&plain, &packed, 3, &mut |_| {}).unwrap();
        assert!(written.size < 100_000, "{} bytes", written.size);
        assert!(is_compressed(&packed) && !is_compressed(&plain));
        assert_eq!(
            content_size(&packed),
            Some(data.len() as u64),
            "the size is in the frame header"
        );
        let back = dir.path().join("back.db");
        let back_written = decompress(&packed, &back, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), data);
        assert_eq!(back_written.size, data.len() as u64);
        let cut = dir.path().join("cut.db.zst");
        let bytes = std::fs::read(&packed).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let out = dir.path().join("out.db");
        let err = decompress(&cut, &out, &mut |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("does not decompress"), "{err:#}");
        assert!(!out.exists());
    }
}
