//! The object store behind the writing operations. The trait is all the rest
//! of treeboot sees; its one implementation, over libostree, is built with
//! the `libostree` feature (on by default), so that the libc-only binaries
//! can also be built without it (the static prepare-root).

use anyhow::Result;
use cap_std_ext::cap_std::fs::Dir;

#[cfg(feature = "libostree")]
mod libostree;
#[cfg(feature = "libostree")]
pub use libostree::Repo;

/// What the writing operations need from the object store. Operations hold
/// it as a trait object, so that the code paths that never construct one
/// (finalize at shutdown, in the libc-only `treeboot` binary) do not link
/// libostree.
pub trait ObjectStore {
    /// A refspec or checksum to a commit checksum.
    fn resolve(&self, refspec: &str) -> Result<String>;
    /// Hardlink checkout of a commit as `dest/name`.
    fn checkout(&self, csum: &str, dest: &Dir, name: &str) -> Result<()>;
    /// Remove unreachable objects: (count, bytes).
    fn prune(&self) -> Result<(i32, u64)>;
    /// Fetch `reference` from `remote` into the repository as the remote's
    /// configuration says (URL, GPG or signature verification), updating
    /// the ref `remote:reference`; with `commit_only`, only the commit
    /// object (enough to read its version and timestamp). `progress` is
    /// called as objects arrive.
    fn pull(&self, remote: &str, reference: &str, commit_only: bool, progress: std::rc::Rc<dyn Fn(&PullProgress)>) -> Result<()>;
    /// The URL of a configured remote (None when there is no such remote).
    fn remote_url(&self, remote: &str) -> Result<Option<String>>;
    /// Every file of a commit's tree, each directory before its contents
    /// (names in byte order), for its composefs image.
    fn composefs_entries(&self, csum: &str) -> Result<Vec<crate::formats::cfsdump::Entry>>;
}

/// How far a pull is (libostree's progress keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct PullProgress {
    /// Objects fetched so far, and requested so far (the total grows while
    /// the metadata is scanned).
    pub fetched: u32,
    pub requested: u32,
    pub bytes: u64,
    /// Still fetching metadata (commits, trees), before the file contents.
    pub metadata: bool,
}

