//! Kernels in `/boot`, BLS entries, GRUB configuration and the swap.

pub mod fat;
pub mod grub;
pub mod kernel;
pub mod swap;
