//! An in-memory [`BufferFs`] that fails the way disks fail, for tests of the
//! disk buffer: short writes, a full disk, I/O errors, failed fsyncs, and
//! power loss.
//!
//! Model (strict POSIX, as the buffer must assume):
//! - A file's bytes are *live* (what reads see, what a process crash
//!   keeps) and *durable* (what [`SegmentFile::sync_data`] last made
//!   stable). A failed fsync leaves the durable bytes as they were; a later
//!   successful one makes everything live durable.
//! - A directory's entries are live and durable the same way: a created,
//!   renamed or removed name is durable only after [`BufferFs::sync_dir`].
//!   Directories themselves are durable once created.
//! - [`MemFs::power_loss`] keeps the durable entries and, of each file, its
//!   durable bytes plus a pseudo-random prefix of what was appended after
//!   them (a torn tail, as a real disk leaves); everything else is dropped,
//!   and handles opened before it fail.
//! - Faults are one-shot and queued per operation ([`MemFs::inject`]); a
//!   capacity ([`MemFs::set_capacity`]) makes appends short, then ENOSPC,
//!   as `write(2)` does on a full disk.
//!
//! Not modelled: data reordered *within* unsynced bytes (holes, blocks of
//! zeros), and Linux's "fsync error reported once, data dropped" behaviour.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{BufferFs, SegmentFile};

/// The operations a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    Append,
    SetLen,
    SyncData,
    SyncDir,
    Open,
    Read,
    List,
    Rename,
    Remove,
    CreateDir,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with an I/O error and does nothing.
    Eio,
    /// The call fails with ENOSPC and does nothing.
    NoSpace,
    /// An append writes at most this many bytes (at least 1) and returns
    /// that count. Other operations fail as with `Eio`.
    Short(usize),
    /// An append writes at most this many bytes, then fails with an I/O
    /// error: a torn write. Other operations fail as with `Eio`.
    Torn(usize),
}

#[derive(Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    faults: Vec<(FsOp, Fault)>,
    capacity: Option<u64>,
    /// Bumped by each power loss: older handles are dead.
    generation: u64,
    /// Injected faults fired, per operation.
    fired: HashMap<FsOp, u64>,
}

impl State {
    fn fault(&mut self, op: FsOp) -> Option<Fault> {
        let at = self.faults.iter().position(|(o, _)| *o == op)?;
        *self.fired.entry(op).or_default() += 1;
        Some(self.faults.remove(at).1)
    }

    /// Fails a non-append operation if a fault is queued for it.
    fn check(&mut self, op: FsOp) -> io::Result<()> {
        match self.fault(op) {
            None => Ok(()),
            Some(Fault::NoSpace) => Err(no_space()),
            Some(_) => Err(eio(op)),
        }
    }

    fn used(&self) -> u64 {
        let live: HashSet<u64> = self.dirs.values().flat_map(|d| d.live.values().copied()).collect();
        live.iter().filter_map(|i| self.inodes.get(i)).map(|n| n.live.len() as u64).sum()
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs.get(&dir).and_then(|d| d.live.get(&name)).copied().ok_or_else(|| not_found(path))
    }
}

fn eio(op: FsOp) -> io::Error {
    io::Error::other(format!("injected I/O error ({op:?})"))
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| not_found(path))?;
    Ok((path.parent().unwrap_or(Path::new("")).to_owned(), name.to_owned()))
}

/// splitmix64: the torn-tail lengths of a power loss, from its seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An in-memory filesystem with fault injection. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFs").finish_non_exhaustive()
    }
}

struct MemFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl MemFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.generation != self.generation {
            return Err(io::Error::other("the handle was opened before a power loss"));
        }
        Ok(st)
    }
}

impl SegmentFile for MemFile {
    fn append(&self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.state()?;
        let mut n = buf.len();
        let mut then_fail = false;
        match st.fault(FsOp::Append) {
            None => {}
            Some(Fault::Eio) => return Err(eio(FsOp::Append)),
            Some(Fault::NoSpace) => return Err(no_space()),
            Some(Fault::Short(k)) => n = n.min(k.max(1)),
            Some(Fault::Torn(k)) => {
                n = n.min(k);
                then_fail = true;
            }
        }
        if let Some(cap) = st.capacity {
            let free = usize::try_from(cap.saturating_sub(st.used())).unwrap_or(usize::MAX);
            if free == 0 && n > 0 {
                return Err(no_space());
            }
            n = n.min(free);
        }
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| io::Error::other("the file is gone"))?;
        inode.live.extend_from_slice(&buf[..n]);
        if then_fail {
            return Err(eio(FsOp::Append));
        }
        Ok(n)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state()?;
        st.check(FsOp::SetLen)?;
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| io::Error::other("the file is gone"))?;
        inode.live.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state()?;
        st.check(FsOp::SyncData)?;
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| io::Error::other("the file is gone"))?;
        inode.durable.clone_from(&inode.live);
        Ok(())
    }
}

impl MemFs {
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a one-shot fault for the next call of `op`.
    pub fn inject(&self, op: FsOp, fault: Fault) {
        self.lock().faults.push((op, fault));
    }

    /// Drops the faults not yet fired.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// How many injected faults have fired.
    pub fn faults_fired(&self) -> u64 {
        self.lock().fired.values().sum()
    }

    /// How many injected faults of `op` have fired.
    pub fn fired(&self, op: FsOp) -> u64 {
        self.lock().fired.get(&op).copied().unwrap_or(0)
    }

    /// Bytes the files hold now.
    pub fn used(&self) -> u64 {
        self.lock().used()
    }

    /// Limits the bytes all files may hold (`None`: unlimited).
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Power goes out: see the module's model. `seed` picks how much of each
    /// file's unsynced tail survives.
    pub fn power_loss(&self, seed: u64) {
        let mut st = self.lock();
        st.generation += 1;
        for dir in st.dirs.values_mut() {
            dir.live = dir.durable.clone();
        }
        let kept: HashSet<u64> = st.dirs.values().flat_map(|d| d.live.values().copied()).collect();
        st.inodes.retain(|id, _| kept.contains(id));
        for (id, inode) in &mut st.inodes {
            let durable = std::mem::take(&mut inode.durable);
            let extra = if inode.live.starts_with(&durable) { inode.live.len() - durable.len() } else { 0 };
            let keep = (mix(seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d)) % (extra as u64 + 1)) as usize;
            let mut now = durable;
            if keep > 0 {
                now.extend_from_slice(&inode.live[now.len()..now.len() + keep]);
            }
            inode.durable.clone_from(&now);
            inode.live = now;
        }
    }

    /// A file's live bytes (what a reader sees now).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let id = st.lookup(path).ok()?;
        st.inodes.get(&id).map(|n| n.live.clone())
    }

    /// Replaces a file's bytes, durably (a test's corruption of the disk).
    pub fn overwrite(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let id = st.lookup(path)?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        inode.live = bytes.to_vec();
        inode.durable = bytes.to_vec();
        Ok(())
    }
}

impl BufferFs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check(FsOp::CreateDir)?;
        for a in dir.ancestors() {
            st.dirs.entry(a.to_owned()).or_default();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        st.check(FsOp::List)?;
        let d = st.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.live.keys().cloned().collect())
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let mut st = self.lock();
        st.check(FsOp::Open)?;
        let (dir, name) = split(path)?;
        let existing = st.dirs.get(&dir).ok_or_else(|| not_found(&dir))?.live.get(&name).copied();
        let inode = match existing {
            Some(id) => id,
            None => {
                st.next_inode += 1;
                let id = st.next_inode;
                st.inodes.insert(id, Inode::default());
                st.dirs.get_mut(&dir).ok_or_else(|| not_found(&dir))?.live.insert(name, id);
                id
            }
        };
        Ok(Arc::new(MemFile { state: Arc::clone(&self.state), inode, generation: st.generation }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        st.check(FsOp::Read)?;
        let id = st.lookup(path)?;
        Ok(st.inodes.get(&id).map(|n| n.live.clone()).unwrap_or_default())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        st.check(FsOp::Read)?;
        let id = st.lookup(path)?;
        let data = st.inodes.get(&id).map(|n| n.live.as_slice()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        data.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check(FsOp::Rename)?;
        let id = st.lookup(from)?;
        let (to_dir, to_name) = split(to)?;
        if !st.dirs.contains_key(&to_dir) {
            return Err(not_found(&to_dir));
        }
        let (from_dir, from_name) = split(from)?;
        if let Some(d) = st.dirs.get_mut(&from_dir) {
            d.live.remove(&from_name);
        }
        if let Some(d) = st.dirs.get_mut(&to_dir) {
            d.live.insert(to_name, id);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check(FsOp::Remove)?;
        st.lookup(path)?;
        let (dir, name) = split(path)?;
        if let Some(d) = st.dirs.get_mut(&dir) {
            d.live.remove(&name);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check(FsOp::SyncDir)?;
        let d = st.dirs.get_mut(dir).ok_or_else(|| not_found(dir))?;
        d.durable = d.live.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::fs::append_all;

    #[test]
    fn power_loss_keeps_what_was_synced_and_named_durably() {
        let fs = MemFs::new();
        let dir = Path::new("/b");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open_append(&dir.join("a")).unwrap();
        append_all(a.as_ref(), b"synced").unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        append_all(a.as_ref(), b" and not").unwrap();
        // A file whose data is synced but whose name is not.
        let b = fs.open_append(&dir.join("b")).unwrap();
        append_all(b.as_ref(), b"lost").unwrap();
        b.sync_data().unwrap();
        // A failed fsync changes nothing durable.
        fs.inject(FsOp::SyncData, Fault::Eio);
        assert!(a.sync_data().is_err());
        fs.power_loss(0);
        assert_eq!(fs.list(dir).unwrap(), vec!["a".to_owned()]);
        let kept = fs.contents(&dir.join("a")).unwrap();
        assert!(kept.starts_with(b"synced") && b"synced and not".starts_with(&kept[..]), "{kept:?}");
        assert!(a.append(b"x").is_err(), "a handle from before the power loss is dead");
        // Some seed keeps none of the tail and some keeps part of it.
        let tails: HashSet<usize> = (0..64)
            .map(|seed| {
                let fs = MemFs::new();
                fs.create_dir_all(dir).unwrap();
                let f = fs.open_append(&dir.join("f")).unwrap();
                fs.sync_dir(dir).unwrap();
                append_all(f.as_ref(), b"0123456789").unwrap();
                fs.power_loss(seed);
                fs.contents(&dir.join("f")).unwrap().len()
            })
            .collect();
        assert!(tails.contains(&0) && tails.len() > 3, "{tails:?}");
    }

    #[test]
    fn a_full_disk_writes_short_then_refuses_and_faults_fire_once() {
        let fs = MemFs::new();
        let dir = Path::new("/b");
        fs.create_dir_all(dir).unwrap();
        fs.set_capacity(Some(10));
        let f = fs.open_append(&dir.join("f")).unwrap();
        assert_eq!(f.append(b"0123456789abc").unwrap(), 10);
        assert_eq!(f.append(b"d").unwrap_err().raw_os_error(), Some(28));
        assert_eq!(append_all(f.as_ref(), b"e").unwrap_err().raw_os_error(), Some(28));
        f.set_len(4).unwrap();
        fs.set_capacity(None);
        fs.inject(FsOp::Append, Fault::Short(2));
        append_all(f.as_ref(), b"wxyz").unwrap();
        fs.inject(FsOp::Append, Fault::Torn(1));
        assert!(append_all(f.as_ref(), b"AB").is_err(), "the torn byte lands but the call fails");
        assert_eq!(fs.contents(&dir.join("f")).unwrap(), b"0123wxyzA");
        fs.inject(FsOp::Rename, Fault::Eio);
        assert!(fs.rename(&dir.join("f"), &dir.join("g")).is_err());
        fs.rename(&dir.join("f"), &dir.join("g")).unwrap();
        assert_eq!(fs.list(dir).unwrap(), vec!["g".to_owned()]);
        assert_eq!(fs.faults_fired(), 3);
        assert_eq!(fs.fired(FsOp::Rename), 1);
    }
}
