//! Pure parsers and writers for the formats ostree systems keep on disk.
//!
//! Nothing in here touches the file system: every function takes and returns
//! strings or bytes, so each format is tested on its own.

pub mod bls;
pub mod cfsdump;
pub mod dpkg;
pub mod grubenv;
pub mod gvariant;
pub mod kargs;
pub mod keyfile;
pub mod names;
pub mod osrelease;
pub mod prepareroot;
pub mod runstate;
pub mod unitname;
