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
}

