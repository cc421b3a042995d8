//! treeboot-generator NORMAL EARLY LATE: the systemd generator (see
//! treeboot::early::generator). Links only libc.

use cap_std_ext::cap_std::{ambient_authority, fs::Dir};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: treeboot-generator NORMAL_DIR [EARLY_DIR LATE_DIR]");
        std::process::exit(2);
    }
    let run = || -> anyhow::Result<()> {
        let cmdline = std::fs::read_to_string("/proc/cmdline")?;
        let root = Dir::open_ambient_dir("/", ambient_authority())?;
        std::fs::create_dir_all(&args[1])?;
        let out = Dir::open_ambient_dir(&args[1], ambient_authority())?;
        treeboot::early::generator::generate(&cmdline, &root, &out)?;
        Ok(())
    };
    if let Err(e) = run() {
        // A generator must not fail the boot: report and write nothing more.
        eprintln!("treeboot-generator: error: {e:#}");
        std::process::exit(1);
    }
}
