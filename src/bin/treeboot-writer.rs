//! `treeboot-writer`: the writing commands of `treeboot` (which execs this
//! binary with its own arguments). Links libostree.

use clap::Parser;
use treeboot::cli::Next;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--list-failpoints") {
        for f in treeboot::failpoint::ALL {
            println!("{f}");
        }
        if !treeboot::failpoint::ENABLED {
            eprintln!("(this build has no failpoints: build with --features failpoints)");
        }
        return;
    }
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    let cli = treeboot::cli::Cli::parse();
    let r = match treeboot::cli::run_reader(cli) {
        Ok(Next::Exit(code)) => Ok(code),
        Ok(Next::Write { sysroot, cmd }) => treeboot::cli::write::run_writer(&sysroot, cmd),
        Err(e) => Err(e),
    };
    match r {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            std::process::exit(treeboot::output::fail(&e));
        }
    }
}
