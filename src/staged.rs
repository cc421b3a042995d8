//! The staged deployment recorded in `/run/ostree/staged-deployment`.
//!
//! Reading it is needed by status and cleanup (a staged deployment is kept);
//! the stage/finalize issue owns writing it.

/// `stateroot/csum.serial` of the staged deployment, if one is recorded and
/// readable.
pub fn staged_deployment_name() -> Option<String> {
    None
}

/// `stateroot-bootcsum` of the staged deployment's kernel directory.
pub fn staged_kernel_dir() -> Option<String> {
    None
}
