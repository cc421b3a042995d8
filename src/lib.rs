//! treeboot: manage image-based, ostree-style operating systems.
pub mod formats;
