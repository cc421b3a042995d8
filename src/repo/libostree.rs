//! The only user of libostree (the `ostree` crate): the object store.
//! Resolving refs, reading commit metadata, hardlink checkouts, pruning,
//! creating the repository of a new sysroot.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{anyhow, bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use fn_error_context::context;
use ostree::gio;
use ostree::glib;

use super::{ObjectStore, PullProgress};
use crate::formats::cfsdump::{Entry, Kind};

pub struct Repo {
    repo: ostree::Repo,
}

impl ObjectStore for Repo {
    fn resolve(&self, refspec: &str) -> Result<String> {
        Repo::resolve(self, refspec)
    }
    fn checkout(&self, csum: &str, dest: &Dir, name: &str) -> Result<()> {
        Repo::checkout(self, csum, dest, name)
    }
    fn prune(&self) -> Result<(i32, u64)> {
        Repo::prune(self)
    }
    fn pull(&self, remote: &str, reference: &str, commit_only: bool, progress: std::rc::Rc<dyn Fn(&PullProgress)>) -> Result<()> {
        Repo::pull(self, remote, reference, commit_only, progress)
    }
    fn remote_url(&self, remote: &str) -> Result<Option<String>> {
        if !self.repo.remote_list().iter().any(|r| r.as_str() == remote) {
            return Ok(None);
        }
        Ok(Some(self.repo.remote_get_url(remote)?.to_string()))
    }
    fn composefs_entries(&self, csum: &str) -> Result<Vec<Entry>> {
        Repo::composefs_entries(self, csum)
    }
}

/// A checksum as a variant's bytes (`ay`), in hex.
fn hex_of(v: &glib::Variant) -> String {
    hex::encode(v.data_as_bytes())
}

/// An `a(ayay)` of extended attributes: names without their trailing NUL.
fn xattrs_of(v: &glib::Variant) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..v.n_children() {
        let pair = v.child_value(i);
        let mut name = pair.child_value(0).data_as_bytes().to_vec();
        if name.last() == Some(&0) {
            name.pop();
        }
        out.push((name, pair.child_value(1).data_as_bytes().to_vec()));
    }
    out
}

fn is_checksum(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Repo {
    /// A new, empty `bare` repository at `ostree/repo` (as `ostree admin init-fs`).
    #[context("Creating repository ostree/repo")]
    pub fn create(sysroot: &Dir) -> Result<()> {
        let fd = sysroot.as_fd();
        ostree::Repo::create_at(fd.as_raw_fd(), "ostree/repo", ostree::RepoMode::Bare, None, gio::Cancellable::NONE)?;
        Ok(())
    }

    #[context("Opening repository ostree/repo")]
    pub fn open(sysroot: &Dir) -> Result<Self> {
        let repo = ostree::Repo::open_at_dir(sysroot.as_fd(), "ostree/repo")?;
        Ok(Self { repo })
    }

    /// A refspec (`remote:ref` or `ref`) or a full checksum, to a commit checksum.
    #[context("Resolving {refspec}")]
    pub fn resolve(&self, refspec: &str) -> Result<String> {
        if is_checksum(refspec) {
            self.repo
                .load_variant_if_exists(ostree::ObjectType::Commit, refspec)?
                .ok_or_else(|| anyhow!("commit {refspec} is not in ostree/repo"))?;
            return Ok(refspec.to_string());
        }
        match self.repo.resolve_rev(refspec, true)? {
            Some(c) => Ok(c.to_string()),
            None => bail!("unknown ref {refspec:?} in ostree/repo"),
        }
    }

    /// The `version` metadata of a commit, if any.
    pub fn commit_version(&self, csum: &str) -> Result<Option<String>> {
        let Some(v) = self
            .repo
            .load_variant_if_exists(ostree::ObjectType::Commit, csum)?
        else {
            return Ok(None);
        };
        let meta = v.child_value(0);
        let dict = glib::VariantDict::new(Some(&meta));
        Ok(dict.lookup::<String>("version").ok().flatten())
    }

    /// Hardlink checkout of `csum` as `dest/name`, the way ostree checks out
    /// deployments (no copy fallback: the repo must be on the same file system).
    #[context("Checking out {csum}")]
    pub fn checkout(&self, csum: &str, dest: &Dir, name: &str) -> Result<()> {
        let opts = ostree::RepoCheckoutAtOptions {
            mode: ostree::RepoCheckoutMode::None,
            overwrite_mode: ostree::RepoCheckoutOverwriteMode::None,
            no_copy_fallback: true,
            enable_fsync: false,
            ..Default::default()
        };
        self.repo
            .checkout_at(Some(&opts), dest.as_fd().as_raw_fd(), name, csum, gio::Cancellable::NONE)
            .with_context(|| format!("checkout of {csum} into {name}"))?;
        Ok(())
    }

    /// Fetch `reference` from `remote` (see [`ObjectStore::pull`]).
    #[context("Pulling {reference} from remote {remote}")]
    pub fn pull(&self, remote: &str, reference: &str, commit_only: bool, progress: std::rc::Rc<dyn Fn(&PullProgress)>) -> Result<()> {
        let opts = glib::VariantDict::new(None);
        opts.insert_value("refs", &glib::Variant::from(&[reference][..]));
        let flags = if commit_only { ostree::RepoPullFlags::COMMIT_ONLY } else { ostree::RepoPullFlags::NONE };
        opts.insert_value("flags", &glib::Variant::from(flags.bits() as i32));
        opts.insert_value("update-frequency", &glib::Variant::from(100u32));
        let ap = ostree::AsyncProgress::new();
        ap.connect_changed(move |p| {
            progress(&PullProgress {
                fetched: p.uint("fetched"),
                requested: p.uint("requested"),
                bytes: p.uint64("bytes-transferred"),
                metadata: p.uint("outstanding-metadata-fetches") > 0,
            })
        });
        let r = self.repo.pull_with_options(remote, &opts.end(), Some(&ap), gio::Cancellable::NONE);
        ap.finish();
        r?;
        Ok(())
    }

    /// See [`ObjectStore::composefs_entries`]: the commit's dirtrees and
    /// dirmetas (uid, gid and mode stored big-endian), and each file
    /// object's metadata as libostree loads it.
    #[context("Listing the files of commit {csum}")]
    pub fn composefs_entries(&self, csum: &str) -> Result<Vec<Entry>> {
        let commit = self.repo.load_variant(ostree::ObjectType::Commit, csum)?;
        let tree = hex_of(&commit.child_value(6));
        let meta = hex_of(&commit.child_value(7));
        let mut out = Vec::new();
        self.walk_dir(b"/".to_vec(), &tree, &meta, &mut out)?;
        Ok(out)
    }

    fn walk_dir(&self, path: Vec<u8>, tree: &str, meta: &str, out: &mut Vec<Entry>) -> Result<()> {
        let m = self.repo.load_variant(ostree::ObjectType::DirMeta, meta).with_context(|| format!("dirmeta {meta}"))?;
        let be = |i: usize| m.child_value(i).get::<u32>().map(u32::from_be).ok_or_else(|| anyhow!("dirmeta {meta}: not (uuua(ayay))"));
        out.push(Entry { path: path.clone(), kind: Kind::Dir, uid: be(0)?, gid: be(1)?, mode: be(2)?, xattrs: xattrs_of(&m.child_value(3)), digest: None });
        let t = self.repo.load_variant(ostree::ObjectType::DirTree, tree).with_context(|| format!("dirtree {tree}"))?;
        let join = |name: &str| {
            let mut p = path.clone();
            if p != b"/" {
                p.push(b'/');
            }
            p.extend_from_slice(name.as_bytes());
            p
        };
        // Files and directories, each list sorted by name in the dirtree.
        let files = t.child_value(0);
        for i in 0..files.n_children() {
            let f = files.child_value(i);
            let name = f.child_value(0).str().unwrap_or_default().to_string();
            let fsum = hex_of(&f.child_value(1));
            let (_, info, xattrs) = self.repo.load_file(&fsum, gio::Cancellable::NONE).with_context(|| format!("file object {fsum}"))?;
            let mode = info.attribute_uint32("unix::mode");
            let kind = if info.file_type() == gio::FileType::SymbolicLink {
                Kind::Symlink { target: info.symlink_target().map(|p| p.as_os_str().as_encoded_bytes().to_vec()).unwrap_or_default() }
            } else {
                let size = info.size() as u64;
                Kind::File { size, object: (size > 0).then(|| fsum.clone()) }
            };
            out.push(Entry {
                path: join(&name),
                kind,
                mode,
                uid: info.attribute_uint32("unix::uid"),
                gid: info.attribute_uint32("unix::gid"),
                xattrs: xattrs_of(&xattrs),
                digest: None,
            });
        }
        let dirs = t.child_value(1);
        for i in 0..dirs.n_children() {
            let d = dirs.child_value(i);
            let name = d.child_value(0).str().unwrap_or_default().to_string();
            self.walk_dir(join(&name), &hex_of(&d.child_value(1)), &hex_of(&d.child_value(2)), out)?;
        }
        Ok(())
    }

    /// Remove objects no ref reaches.
    #[context("Pruning ostree/repo")]
    pub fn prune(&self) -> Result<(i32, u64)> {
        let (_total, pruned, size) =
            self.repo
                .prune(ostree::RepoPruneFlags::REFS_ONLY, 0, gio::Cancellable::NONE)?;
        Ok((pruned, size))
    }
}
