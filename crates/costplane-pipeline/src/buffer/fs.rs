//! The filesystem seam of the disk buffer: every file operation the buffer
//! makes goes through [`BufferFs`], so that the same code runs on the real
//! filesystem ([`StdFs`]) and, in tests, on an in-memory one that injects
//! the faults disks have ([`super::memfs::MemFs`]: short writes, ENOSPC,
//! EIO, failed fsyncs, power loss).
//!
//! Invariants:
//! - **Only what the buffer needs.** Create/open for appending, append,
//!   truncate, fsync of a file's data, fsync of a directory, whole and
//!   ranged reads, listing, rename and remove; nothing else is reachable,
//!   so a model of these operations is a model of the buffer's I/O.
//! - **Appends may be short.** [`SegmentFile::append`] returns how much it
//!   wrote, as `write(2)` does; [`append_all`] loops. After an error some
//!   of the bytes may be in the file: the caller cuts back to what it knows
//!   is whole.
//! - **Durability is explicit.** Data is durable after
//!   [`SegmentFile::sync_data`]; a file's *name* (creation, rename, removal)
//!   is durable after [`BufferFs::sync_dir`] of its directory. Nothing is
//!   assumed about what a power loss keeps beyond that.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// An open segment (or any file the buffer writes): appended at its end.
pub trait SegmentFile: Send + Sync {
    /// Writes some of `buf` at the end of the file: how many bytes (may be
    /// fewer than `buf.len()`; 0 only when `buf` is empty).
    fn append(&self, buf: &[u8]) -> io::Result<usize>;
    /// Cuts (or extends with zeros) the file to `len` bytes; later appends
    /// go to the new end.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Forces the file's data to stable storage.
    fn sync_data(&self) -> io::Result<()>;
}

/// The file operations of the disk buffer.
pub trait BufferFs: Send + Sync + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for appending, creating it (empty) if missing.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes from `offset` (an error if the file is shorter).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to` (replacing `to`), in one directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, renamed, removed in
    /// it) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Appends all of `buf`, looping over short writes.
pub fn append_all(file: &dyn SegmentFile, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.append(buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no bytes")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` as the file `path` whole or not at all: a temporary
/// name, its data synced, renamed, the directory synced.
pub fn write_file_durably(fs: &dyn BufferFs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let f = fs.open_append(&tmp)?;
        f.set_len(0)?;
        append_all(f.as_ref(), bytes)?;
        f.sync_data()
    })();
    if let Err(e) = written.and_then(|()| fs.rename(&tmp, path)) {
        let _ = fs.remove(&tmp);
        return Err(e);
    }
    fs.sync_dir(dir)
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl SegmentFile for StdFile {
    fn append(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl BufferFs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(Arc::new(StdFile(OpenOptions::new().create(true).append(true).open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; len];
        f.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
