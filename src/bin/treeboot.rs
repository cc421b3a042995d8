//! `treeboot`: read-only commands run here, without libostree; writing
//! commands are handed to `treeboot-writer` (same arguments) by exec.

use clap::Parser;
use std::os::unix::process::CommandExt;
use treeboot::cli::Next;

fn writer_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TREEBOOT_WRITER") {
        return p.into();
    }
    if let Ok(exe) = std::env::current_exe() {
        let sibling = exe.with_file_name("treeboot-writer");
        if sibling.exists() {
            return sibling;
        }
    }
    "/usr/libexec/treeboot/treeboot-writer".into()
}

fn main() {
    // finalize-staged runs here: its failpoints too.
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    let cli = treeboot::cli::Cli::parse();
    // Like any filter: `treeboot status | head -1` ends quietly. Not
    // finalize-staged: it runs at shutdown with its output on journald's
    // stream, and a log line that cannot be written there must not end the
    // swap halfway (its messages ignore write errors; SIGPIPE stays as
    // systemd's IgnoreSIGPIPE= left it).
    if !matches!(cli.cmd, treeboot::cli::Cmd::FinalizeStaged { .. }) {
        treeboot::sys::default_sigpipe();
    }
    match treeboot::cli::run_reader(cli) {
        Ok(Next::Exit(0)) => {}
        Ok(Next::Exit(code)) => std::process::exit(code),
        Ok(Next::Write { .. }) => {
            let path = writer_path();
            let err = std::process::Command::new(&path)
                .args(std::env::args_os().skip(1))
                .exec();
            eprintln!("error: running {}: {err}", path.display());
            std::process::exit(1);
        }
        Err(e) => {
            std::process::exit(treeboot::output::fail(&e));
        }
    }
}
