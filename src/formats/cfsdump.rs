//! The composefs dump format (composefs-dump(5)): one line per file, the
//! text `mkcomposefs --from-file` turns into a composefs image. treeboot
//! writes it from an ostree commit the way libostree builds its image
//! (`ostree-repo-composefs.c`): every file's metadata from the commit, a
//! regular file's data named by its object path in the bare repository
//! (`xx/rest.file`, the overlay's redirect into `ostree/repo/objects`), no
//! data inline, all times zero, and the top-level directories a root needs
//! as mount points (`usr`, `etc`, `boot`, `var`, `sysroot`) added when the
//! commit lacks them.

use std::fmt::Write as _;

/// What a file of the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file: its size and, when it has data, its file object's
    /// checksum.
    File { size: u64, object: Option<String> },
    Symlink { target: Vec<u8> },
}

/// One file of the tree: its absolute path (`/` for the root), `st_mode`
/// (type and permissions), owner, extended attributes (names without a
/// trailing NUL), and the fs-verity digest of a regular file's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub digest: Option<[u8; 32]>,
}

/// The mount points libostree adds to every image (`root_dirs` in
/// `_ostree_repo_checkout_composefs`).
pub const ROOT_DIRS: [&str; 5] = ["usr", "etc", "boot", "var", "sysroot"];

/// The object path of a file object, relative to `objects/` (the payload).
pub fn object_path(checksum: &str) -> String {
    format!("{}/{}.file", &checksum[..2], &checksum[2..])
}

/// composefs-dump's escape: `\\`, and `\xXY` for the bytes that would end a
/// field (space, controls, non-ASCII, and `=` in an xattr's name and
/// value); a field that is exactly `-` (the "unset" mark) is escaped too.
fn escape(out: &mut String, b: &[u8], in_xattr: bool) {
    if b == b"-" {
        out.push_str("\\x2d");
        return;
    }
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'=' if in_xattr => out.push_str("\\x3d"),
            0x21..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
}

/// The dump of `entries`, which list every directory before what is in
/// it. The top-level mount points are added after the root when missing.
pub fn dump(entries: &[Entry]) -> String {
    let mut out = String::new();
    let mut missing: Vec<&str> = ROOT_DIRS.to_vec();
    for e in entries {
        if let Some(name) = e.path.strip_prefix(b"/") {
            missing.retain(|d| d.as_bytes() != name);
        }
    }
    for e in entries {
        line(&mut out, e);
        if e.path == b"/" {
            for d in &missing {
                let extra = Entry {
                    path: format!("/{d}").into_bytes(),
                    kind: Kind::Dir,
                    mode: 0o40755,
                    uid: 0,
                    gid: 0,
                    xattrs: Vec::new(),
                    digest: None,
                };
                line(&mut out, &extra);
            }
        }
    }
    out
}

fn line(out: &mut String, e: &Entry) {
    escape(out, &e.path, false);
    let (size, nlink) = match &e.kind {
        Kind::Dir => (0, 2),
        Kind::File { size, .. } => (*size, 1),
        Kind::Symlink { target } => (target.len() as u64, 1),
    };
    let _ = write!(out, " {size} {:o} {nlink} {} {} 0 0.0 ", e.mode, e.uid, e.gid);
    // The payload: a regular file's object path, a symlink's target.
    match &e.kind {
        Kind::File { object: Some(o), .. } => out.push_str(&object_path(o)),
        Kind::Symlink { target } => escape(out, target, false),
        _ => out.push('-'),
    }
    // No inline content; the digest of a file that has an object.
    out.push_str(" - ");
    match (&e.kind, e.digest) {
        (Kind::File { object: Some(_), .. }, Some(d)) => {
            for b in d {
                let _ = write!(out, "{b:02x}");
            }
        }
        _ => out.push('-'),
    }
    for (k, v) in &e.xattrs {
        out.push(' ');
        escape(out, k, true);
        out.push('=');
        escape(out, v, true);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str, mode: u32) -> Entry {
        Entry { path: path.as_bytes().to_vec(), kind: Kind::Dir, mode: 0o40000 | mode, uid: 0, gid: 0, xattrs: vec![], digest: None }
    }

    #[test]
    fn lines_as_mkcomposefs_reads_them() {
        let csum = "35d02f81325122d77ec1d11baba655bc9bf8a891ab26119a41c50fa03ddfb408";
        let mut f = Entry {
            path: b"/usr/a file".to_vec(),
            kind: Kind::File { size: 259, object: Some(csum.into()) },
            mode: 0o100644,
            uid: 0,
            gid: 42,
            xattrs: vec![(b"security.selinux".to_vec(), b"system_u:object_r:bin_t:s0\0".to_vec())],
            digest: None,
        };
        let entries = vec![dir("/", 0o755), dir("/usr", 0o755), f.clone()];
        let d = dump(&entries);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines[0], "/ 0 40755 2 0 0 0 0.0 - - -");
        // The missing mount points follow the root, in libostree's order.
        assert_eq!(&lines[1..5], &["/etc 0 40755 2 0 0 0 0.0 - - -", "/boot 0 40755 2 0 0 0 0.0 - - -", "/var 0 40755 2 0 0 0 0.0 - - -", "/sysroot 0 40755 2 0 0 0 0.0 - - -"]);
        assert_eq!(lines[5], "/usr 0 40755 2 0 0 0 0.0 - - -");
        assert_eq!(
            lines[6],
            format!("/usr/a\\x20file 259 100644 1 0 42 0 0.0 35/{}.file - - security.selinux=system_u:object_r:bin_t:s0\\x00", &csum[2..])
        );
        f.digest = Some([0xab; 32]);
        let d = dump(&[f]);
        assert!(d.contains(&format!(" - {} security", "ab".repeat(32))), "{d}");
    }

    #[test]
    fn escapes() {
        let l = dump(&[
            Entry { path: b"/-".to_vec(), kind: Kind::Symlink { target: b"../a\\b".to_vec() }, mode: 0o120777, uid: 0, gid: 0, xattrs: vec![(b"user.k=1".to_vec(), b"-".to_vec())], digest: None },
            Entry { path: b"/empty".to_vec(), kind: Kind::File { size: 0, object: None }, mode: 0o100600, uid: 0, gid: 0, xattrs: vec![], digest: Some([1; 32]) },
        ]);
        let lines: Vec<&str> = l.lines().collect();
        // Only a field that is exactly "-" is escaped, not one holding it.
        assert_eq!(lines[0], "/- 6 120777 1 0 0 0 0.0 ../a\\\\b - - user.k\\x3d1=\\x2d");
        // An empty file has no object and so no payload or digest.
        assert_eq!(lines[1], "/empty 0 100600 1 0 0 0 0.0 - - -");
    }
}
