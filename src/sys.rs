//! The only module with `unsafe` code: system calls that rustix has no safe
//! wrapper for, each behind a safe function.
//!
//! The crate denies `unsafe_code` everywhere else (`[lints]` in Cargo.toml).
//! Before adding something here, check that rustix (or std) has no safe
//! call for it; every unsafe block states why it is sound (`// SAFETY:`).
//!
//! - [`default_sigpipe`]: rustix has no `signal()` outside its unstable
//!   `runtime` API.
//! - [`ofd_write_lock`]: rustix's `fcntl_lock` takes process-associated
//!   locks (`F_SETLK`); `/ostree/lock` needs the open-file-description kind
//!   (`F_OFD_SETLK`) that libostree takes.
//! - [`fifreeze`], [`fithaw`], [`fibmap`]: rustix has no wrapper for these
//!   ioctls.
//! - [`ThawWatchdog`]: `fork()`, which rustix offers only in its unstable
//!   `runtime` API, and the async-signal-safe calls its child makes.
//! - [`loop_attach_readonly`]: the loop ioctls (`LOOP_CTL_GET_FREE`,
//!   `LOOP_CONFIGURE`), for a composefs image on a kernel whose EROFS
//!   cannot mount a file directly.
//! - [`enable_verity`], [`measure_verity`]: the fs-verity ioctls.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::io::Errno;

/// Restore the default action of `SIGPIPE` (end the process), which the
/// Rust runtime sets to "ignore": like any filter, `treeboot status | head -1`
/// then ends quietly instead of failing on `EPIPE`.
pub fn default_sigpipe() {
    // SAFETY: `SIG_DFL` installs no handler, so no code of ours can run in
    // signal context; `signal` only changes the process's disposition and
    // touches no memory of ours. Its return value (the old disposition, or
    // `SIG_ERR`, impossible for a valid signal number) is not needed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// One `fcntl(F_OFD_SETLK)` (or `F_OFD_SETLKW` when `wait`) for an exclusive
/// (write) lock on the whole file behind `fd`: an open-file-description lock,
/// owned by the open file and released when its last descriptor closes.
/// Errors are the raw ones (`EINTR`, and `EAGAIN`/`EACCES` when the lock is
/// held and `wait` is false): the caller decides what to retry.
pub fn ofd_write_lock(fd: BorrowedFd<'_>, wait: bool) -> io::Result<()> {
    // SAFETY: `struct flock` is plain data (integers only); all-zero is a
    // valid value of it, and the zero `l_pid` that F_OFD_* requires.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // l_start = l_len = 0: the whole file, however it grows.
    let cmd = if wait { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK };
    // SAFETY: `fd` is a descriptor borrowed for the duration of the call, and
    // F_OFD_SETLK(W) only reads the `struct flock` it is given, which lives
    // on our stack until the call returns.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl as *const libc::flock) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How long the watchdog lets a file system stay frozen before it thaws it
/// on its own (libostree's watchdog waits as long). The cycle itself takes
/// microseconds; this only bounds a writer that stalls (a stopped process,
/// a debugger) between freeze and thaw.
pub const THAW_TIMEOUT_MS: i32 = 30_000;

const FIFREEZE: u32 = 0xC004_5877;
const FITHAW: u32 = 0xC004_5878;

/// FIFREEZE on the file system of `fd`.
pub fn fifreeze(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: FIFREEZE takes no argument (an int the kernel ignores); `fd`
    // is a valid descriptor for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FIFREEZE as _, 0) };
    if r == 0 { Ok(()) } else { Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)) }
}

/// FITHAW on the file system of `fd`.
pub fn fithaw(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: as for FIFREEZE.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FITHAW as _, 0) };
    if r == 0 { Ok(()) } else { Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)) }
}

const FIBMAP: u32 = 1;

/// FIBMAP: the physical block holding logical block `block` of the file
/// behind `fd` (0: a hole, or an empty file). Needs CAP_SYS_RAWIO.
pub fn fibmap(fd: BorrowedFd<'_>, block: u32) -> Result<u32, Errno> {
    let mut b: libc::c_int = block as libc::c_int;
    // SAFETY: FIBMAP reads and writes one int, which lives on our stack
    // until the call returns; `fd` is valid for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FIBMAP as _, &mut b as *mut libc::c_int) };
    if r == 0 { Ok(b as u32) } else { Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)) }
}

/// A child process that thaws a file system unless told, in time, that
/// its parent has thawed it. It is armed before the freeze: [`arm`]
/// returns only once the child has said it ignores SIGINT, SIGTERM and
/// SIGHUP and has left the parent's session (a Ctrl-C, the hang-up of a
/// terminal or systemd's stop of the unit do not reach it). It thaws when
/// its parent dies (the socket closes: SIGKILL included), when it is not
/// told within the timeout, or on any error.
///
/// [`arm`]: ThawWatchdog::arm
pub struct ThawWatchdog {
    sock: UnixStream,
    pid: rustix::process::Pid,
}

impl ThawWatchdog {
    pub fn arm(fd: BorrowedFd<'_>, timeout_ms: i32) -> std::io::Result<Self> {
        let (parent, child) = UnixStream::pair()?;
        let raw_fs = fd.as_raw_fd();
        let raw_child = child.as_raw_fd();
        let raw_parent = parent.as_raw_fd();
        // SAFETY: fork in a possibly multi-threaded process: the child only
        // makes async-signal-safe calls (close, setsid, signal, write,
        // poll, read, ioctl, _exit) on descriptors and values taken before
        // the fork, and never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; every pointer passed is to this stack frame.
            unsafe {
                libc::close(raw_parent);
                libc::setsid();
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let armed = b'A';
                if libc::write(raw_child, &armed as *const u8 as *const libc::c_void, 1) == 1 {
                    let mut pfd = libc::pollfd { fd: raw_child, events: libc::POLLIN, revents: 0 };
                    let mut n;
                    loop {
                        n = libc::poll(&mut pfd, 1, timeout_ms);
                        if n >= 0 || *libc::__errno_location() != libc::EINTR {
                            break;
                        }
                    }
                    let mut b = 0u8;
                    if n == 1 && libc::read(raw_child, &mut b as *mut u8 as *mut libc::c_void, 1) == 1 && b == b'D' {
                        libc::_exit(0);
                    }
                }
                // The parent died, stalled or said something else: thaw.
                libc::ioctl(raw_fs, FITHAW as _, 0);
                libc::_exit(1);
            }
        }
        drop(child);
        let pid = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
        // From here, dropping `w` closes the socket: the watchdog thaws (a
        // no-op when nothing is frozen) and is reaped.
        let w = ThawWatchdog { sock: parent, pid };
        w.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut b = [0u8; 1];
        match (&w.sock).read(&mut b) {
            Ok(1) if b[0] == b'A' => Ok(w),
            Ok(_) => Err(std::io::Error::other("the thaw watchdog exited before it was armed")),
            Err(e) => Err(std::io::Error::new(e.kind(), format!("waiting for the thaw watchdog to be armed: {e}"))),
        }
    }

    /// The parent has thawed: tell the watchdog (dropping then reaps it).
    pub fn disarm(self) {
        let _ = (&self.sock).write_all(b"D");
    }
}

impl Drop for ThawWatchdog {
    fn drop(&mut self) {
        // Without a "D" first (an error path), the closed socket makes the
        // watchdog thaw and exit. Either way it is reaped here.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty());
    }
}

const LOOP_CTL_GET_FREE: u32 = 0x4C82;
const LOOP_CONFIGURE: u32 = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h, Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A read-only loop device over `backing` (4096-byte blocks, autoclear: it
/// goes away when its last user, the mount made from it, goes). Returns
/// the open device, to be closed once it is mounted, and its path.
pub fn loop_attach_readonly(backing: BorrowedFd<'_>, name: &str) -> io::Result<(std::fs::File, String)> {
    let ctl = std::fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    // Another process may take the free device between the two calls:
    // LOOP_CONFIGURE then fails with EBUSY, and we ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = format!("/dev/loop{n}");
        let dev = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
        // SAFETY: LoopConfig is plain data (integers and byte arrays):
        // all-zero is a valid value of it.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.block_size = 4096;
        cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        let b = name.as_bytes();
        let len = b.len().min(cfg.info.lo_file_name.len() - 1);
        cfg.info.lo_file_name[..len].copy_from_slice(&b[..len]);
        // SAFETY: LOOP_CONFIGURE only reads the struct, which lives on our
        // stack until the call returns; both descriptors are valid for it.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok((dev, path));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(io::Error::new(e.kind(), format!("LOOP_CONFIGURE on {path}: {e}")));
        }
    }
    Err(io::Error::other("no free loop device (16 tries)"))
}

const FS_IOC_ENABLE_VERITY: u32 = 0x4080_6685;
const FS_IOC_MEASURE_VERITY: u32 = 0xC004_6686;
const FS_VERITY_HASH_ALG_SHA256: u32 = 1;

/// `struct fsverity_enable_arg` (linux/fsverity.h).
#[repr(C)]
struct FsverityEnableArg {
    version: u32,
    hash_algorithm: u32,
    block_size: u32,
    salt_size: u32,
    salt_ptr: u64,
    sig_size: u32,
    reserved1: u32,
    sig_ptr: u64,
    reserved2: [u64; 11],
}

/// Enable fs-verity (SHA-256, 4096-byte blocks, no salt: composefs's and
/// libostree's parameters) on the file behind `fd`, open read-only with no
/// writer anywhere. Errors are the raw ones: `EEXIST` when it is on
/// already, `EOPNOTSUPP`/`ENOTTY` when the file system cannot.
pub fn enable_verity(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let arg = FsverityEnableArg {
        version: 1,
        hash_algorithm: FS_VERITY_HASH_ALG_SHA256,
        block_size: 4096,
        salt_size: 0,
        salt_ptr: 0,
        sig_size: 0,
        reserved1: 0,
        sig_ptr: 0,
        reserved2: [0; 11],
    };
    // SAFETY: the ioctl only reads the struct, which lives on our stack
    // until the call returns; it has no salt or signature pointers.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_ENABLE_VERITY as _, &arg as *const FsverityEnableArg) };
    if r == 0 { Ok(()) } else { Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO)) }
}

/// The SHA-256 fs-verity digest of the file behind `fd`, when fs-verity
/// is on for it (None when it is not, or the file system has none).
pub fn measure_verity(fd: BorrowedFd<'_>) -> Option<[u8; 32]> {
    #[repr(C)]
    struct Digest {
        algorithm: u16,
        size: u16,
        digest: [u8; 64],
    }
    let mut d = Digest { algorithm: 0, size: 64, digest: [0; 64] };
    // SAFETY: the kernel writes at most `size` (64) bytes of digest after
    // the two u16s, into the struct on our stack.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_MEASURE_VERITY as _, &mut d as *mut Digest) };
    if r != 0 || d.algorithm != FS_VERITY_HASH_ALG_SHA256 as u16 || d.size != 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&d.digest[..32]);
    Some(out)
}

#[cfg(test)]
mod abi {
    #[test]
    fn kernel_struct_sizes() {
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 8 + 232 + 64);
        assert_eq!(std::mem::size_of::<super::FsverityEnableArg>(), 128);
    }
}
