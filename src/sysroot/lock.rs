//! The sysroot write lock, `/ostree/lock`.
//!
//! libostree 2022.7 takes an open-file-description lock (`F_OFD_SETLK`, seen
//! with strace) on `ostree/lock`; other tools use `flock()`. The two kinds do
//! not see each other on Linux, so treeboot takes both, OFD first: it then
//! excludes `ostree admin` and any flock user, and two treeboots cannot
//! deadlock because each takes the locks in the same order. libostree
//! unlinks the file when it lets go, so a lock won on a file that no longer
//! has a name is retried on the new one (as libglnx does).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Result;
use cap_std_ext::cap_std::fs::{Dir, OpenOptions};
use cap_std_ext::cap_std::fs::OpenOptionsExt as _;
use fn_error_context::context;

pub struct SysrootLock {
    _file: cap_std_ext::cap_std::fs::File,
}

/// Take the OFD write lock; `Ok(false)` when another holds it and `wait` is
/// false. Interrupted waits are retried. (Through `sys`: rustix's
/// `fcntl_lock` takes process-associated `F_SETLK` locks, which any close of
/// the file in this process would release.)
fn ofd_lock(fd: BorrowedFd<'_>, wait: bool) -> std::io::Result<bool> {
    loop {
        match crate::sys::ofd_write_lock(fd, wait) {
            Ok(()) => return Ok(true),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::EACCES) if !wait => return Ok(false),
                _ => return Err(e),
            },
        }
    }
}

/// Who else has the lock file open (the holder, in practice: libostree and
/// treeboot open it only to lock it), as `pid N (command line)`, read from
/// /proc; None when /proc does not say (another PID namespace, no /proc).
fn holders(file: &cap_std_ext::cap_std::fs::File) -> Option<String> {
    let st = rustix::fs::fstat(file).ok()?;
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        let open = fds.flatten().any(|fd| {
            std::fs::metadata(fd.path()).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.dev() == st.st_dev && m.ino() == st.st_ino
            })
        });
        if open {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            // One line, and short: a script's text can be in its arguments.
            let mut cmd = String::from_utf8_lossy(&cmd).replace('\0', " ").split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some((cut, _)) = cmd.char_indices().nth(60) {
                cmd.truncate(cut);
                cmd.push_str("...");
            }
            found.push(format!("pid {pid} ({})", if cmd.is_empty() { "?" } else { &cmd }));
        }
    }
    (!found.is_empty()).then(|| found.join(", "))
}

impl SysrootLock {
    /// Take the lock, waiting for another writer to finish. Prints a line
    /// when it has to wait, so a stuck caller knows why.
    #[context("Locking ostree/lock")]
    pub fn acquire(root: &Dir) -> Result<Self> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).mode(0o600);
        let mut said = false;
        loop {
            let file = root.open_with("ostree/lock", &opts)?;
            let fd = file.as_fd();
            if !ofd_lock(fd, false)? {
                if !said {
                    // Not eprintln!: at shutdown (finalize) nobody may read
                    // stderr any more, and a lost line must not end the caller.
                    let by = holders(&file).map(|h| format!(" (held by {h})")).unwrap_or_default();
                    let _ = writeln!(std::io::stderr(), "Waiting for another writer to release ostree/lock{by}...");
                    said = true;
                }
                ofd_lock(fd, true)?;
            }
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
            // libostree unlinks the lock file when it releases it: a lock
            // won on the unlinked file protects nothing. Start over then.
            if rustix::fs::fstat(&file)?.st_nlink > 0 {
                return Ok(Self { _file: file });
            }
        }
    }
}
