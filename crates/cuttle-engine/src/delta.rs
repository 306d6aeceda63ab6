//! Delta transfer, rsync-style: the agent describes a file it has (the
//! basis) by block checksums, the server sends only what differs in the new
//! file, and the agent rebuilds the new file from the basis and the delta.
//! `fast_rsync` computes and applies the deltas (librsync's format); files
//! are memory-mapped, so a large package costs page cache, not heap.
//!
//! Its block hash is MD4, which an adversary could collide: the rebuilt file
//! is only kept when its SHA-256 is the one the server asked for.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use fast_rsync::{Signature, SignatureOptions};

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the basis signature is not valid: {0}")]
    Signature(String),
    #[error("the delta could not be computed: {0}")]
    Diff(String),
    #[error("the delta does not apply to the basis: {0}")]
    Apply(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeltaError {
    let path = path.to_path_buf();
    move |source| DeltaError::Io { what, path, source }
}

/// Maps a whole file read-only; an empty file maps to an empty slice.
struct Mapped {
    map: Option<memmap2::Mmap>,
}

impl Mapped {
    fn open(path: &Path) -> Result<Mapped, DeltaError> {
        let file = File::open(path).map_err(io("reading", path))?;
        let len = file.metadata().map_err(io("reading", path))?.len();
        if len == 0 {
            return Ok(Mapped { map: None });
        }
        // SAFETY: the cache's files are written once (by rename) and never
        // modified in place, and the server's package files likewise; a
        // file truncated under us would fault, which only a local
        // administrator could cause.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mapping", path))?;
        Ok(Mapped { map: Some(map) })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Blocks of at least 4 KiB, larger for large files so that a signature
/// stays near 100,000 blocks (about 1.2 MB) at most.
fn block_size(len: usize) -> u32 {
    let size = (len / 100_000).clamp(4096, 1 << 20);
    u32::try_from(size).unwrap_or(1 << 20)
}

/// The signature of the basis file at `path`, to send to the server.
pub fn signature_of(path: &Path) -> Result<Vec<u8>, DeltaError> {
    let basis = Mapped::open(path)?;
    let options = SignatureOptions {
        block_size: block_size(basis.bytes().len()),
        crypto_hash_size: 8,
    };
    Ok(Signature::calculate(basis.bytes(), options).into_serialized())
}

/// The delta that turns the basis described by `signature` into the file at
/// `new_file`.
pub fn delta_for(new_file: &Path, signature: Vec<u8>) -> Result<Vec<u8>, DeltaError> {
    let signature =
        Signature::deserialize(signature).map_err(|e| DeltaError::Signature(e.to_string()))?;
    let new = Mapped::open(new_file)?;
    let mut delta = vec![];
    fast_rsync::diff(&signature.index(), new.bytes(), &mut delta)
        .map_err(|e| DeltaError::Diff(e.to_string()))?;
    Ok(delta)
}

/// Rebuilds a file of exactly `size` bytes from the basis at `basis` and the
/// delta at `delta`, writing it to `out` (created or truncated).
pub fn apply(basis: &Path, delta: &Path, out: &Path, size: u64) -> Result<(), DeltaError> {
    let base = Mapped::open(basis)?;
    let delta_bytes = Mapped::open(delta)?;
    let file = File::create(out).map_err(io("writing", out))?;
    let mut writer = BufWriter::new(file);
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    fast_rsync::apply_limited(base.bytes(), delta_bytes.bytes(), &mut writer, limit)
        .map_err(|e| DeltaError::Apply(e.to_string()))?;
    writer.flush().map_err(io("writing", out))?;
    let written = writer
        .get_ref()
        .metadata()
        .map_err(io("writing", out))?
        .len();
    if written != size {
        return Err(DeltaError::Apply(format!(
            "it rebuilt {written} bytes, not the {size} expected"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_small_change_makes_a_small_delta_that_rebuilds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = noise(4 << 20, 1);
        let mut new = old.clone();
        // 1% of the bytes change, in one place.
        for b in &mut new[1 << 20..(1 << 20) + (4 << 20) / 100] {
            *b = b.wrapping_add(1);
        }
        let (basis, target, delta_file, rebuilt) = (
            dir.path().join("basis"),
            dir.path().join("new"),
            dir.path().join("delta"),
            dir.path().join("rebuilt"),
        );
        std::fs::write(&basis, &old).unwrap();
        std::fs::write(&target, &new).unwrap();
        let signature = signature_of(&basis).unwrap();
        let delta = delta_for(&target, signature).unwrap();
        assert!(
            delta.len() < new.len() / 20,
            "a delta of {} bytes for a 1% change of {} bytes",
            delta.len(),
            new.len()
        );
        std::fs::write(&delta_file, &delta).unwrap();
        apply(&basis, &delta_file, &rebuilt, new.len() as u64).unwrap();
        assert_eq!(std::fs::read(&rebuilt).unwrap(), new);
    }

    #[test]
    fn a_delta_for_another_basis_or_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, d, out) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("d"),
            dir.path().join("out"),
        );
        std::fs::write(&a, noise(100_000, 2)).unwrap();
        std::fs::write(&b, noise(100_000, 3)).unwrap();
        let delta = delta_for(&b, signature_of(&a).unwrap()).unwrap();
        std::fs::write(&d, &delta).unwrap();
        assert!(matches!(
            apply(&a, &d, &out, 99_999),
            Err(DeltaError::Apply(_))
        ));
        std::fs::write(&d, b"not a delta").unwrap();
        assert!(matches!(
            apply(&a, &d, &out, 100_000),
            Err(DeltaError::Apply(_))
        ));
        assert!(matches!(
            delta_for(&b, b"not a signature".to_vec()),
            Err(DeltaError::Signature(_))
        ));
    }
}
