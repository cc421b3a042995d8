//! treeboot-generator NORMAL EARLY LATE: the systemd generator (see
//! treeboot::early::generator). Links only libc.

use cap_std_ext::cap_std::{ambient_authority, fs::Dir};

use treeboot::early::GENERATOR;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(a) if GENERATOR.answer(a) => return,
        // Never a directory named like an option.
        Some(a) if a.starts_with('-') => {
            eprintln!("treeboot-generator: unknown option {a}\n{}", GENERATOR.usage);
            std::process::exit(2);
        }
        Some(_) => {}
        None => {
            eprintln!("{}", GENERATOR.usage);
            std::process::exit(2);
        }
    }
    let run = || -> anyhow::Result<()> {
        let cmdline = std::fs::read_to_string("/proc/cmdline")?;
        let root = Dir::open_ambient_dir("/", ambient_authority())?;
        std::fs::create_dir_all(&args[1])?;
        let out = Dir::open_ambient_dir(&args[1], ambient_authority())?;
        let g = treeboot::early::generator::generate(&cmdline, &root, &out)?;
        if let Some(why) = g.stood_aside {
            eprintln!("treeboot-generator: nothing to do: {why}");
        }
        Ok(())
    };
    if let Err(e) = run() {
        // A generator must not fail the boot: report and write nothing more.
        eprintln!("treeboot-generator: error: {e:#}");
        std::process::exit(1);
    }
}
