//! `treeboot-gendocs SHAREDIR`: the man pages (section 8) of `treeboot`, of
//! each of its verbs and of the early binaries, generated from their
//! command-line definitions, and `treeboot`'s shell completions for bash,
//! zsh and fish, written where Debian keeps them under SHAREDIR
//! (`/usr/share`). Run by `make install`; not installed itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;

/// The early binaries parse their few arguments by hand (they stay small,
/// and prepare-root runs as PID 1): their options are described here, with
/// the description their `--help` prints (`treeboot::early::About`).
fn early_binaries() -> Vec<Command> {
    use treeboot::early::{GENERATOR, PREPARE_ROOT, REMOUNT};
    let flag = |name: &'static str, help: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue).help(help);
    vec![
        Command::new(PREPARE_ROOT.name)
            .about(PREPARE_ROOT.about)
            .arg(Arg::new("cmdline").long("cmdline").value_name("FILE").help("Read the kernel command line from FILE instead of /proc/cmdline"))
            .arg(flag("bind-var", "Bind the stateroot's var at SYSROOT/var itself (the default without systemd)"))
            .arg(flag("no-bind-var", "Leave /var to the generator's var.mount (the default under systemd)"))
            .arg(Arg::new("sysroot").value_name("SYSROOT").help("Where the deployment is set up (default /sysroot)")),
        Command::new(REMOUNT.name)
            .about(REMOUNT.about)
            .arg(Arg::new("root").long("root").value_name("DIR").help("Apply the policy below DIR instead of / (for tests)")),
        Command::new(GENERATOR.name)
            .about(GENERATOR.about)
            .arg(Arg::new("normal").value_name("NORMAL_DIR").required(true).help("systemd's normal generator output directory"))
            .arg(Arg::new("early").value_name("EARLY_DIR").help("systemd's early generator output directory (unused)"))
            .arg(Arg::new("late").value_name("LATE_DIR").help("systemd's late generator output directory (unused)")),
    ]
}

fn write_man(dir: &Path, cmd: Command) -> Result<()> {
    let name = cmd.get_name().to_string();
    let path = dir.join(format!("{name}.8"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).section("8").render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| format!("Writing {}", path.display()))
}

/// `treeboot` and every verb (`treeboot-deploy`, `treeboot-etc-diff`, ...).
fn write_verbs(dir: &Path, cmd: &Command, prefix: &str) -> Result<()> {
    for sub in cmd.get_subcommands() {
        let name = format!("{prefix}-{}", sub.get_name());
        write_verbs(dir, sub, &name)?;
        // (clap names are &'static str; this runs once and exits.)
        let shown: &'static str = Box::leak(name.into_boxed_str());
        write_man(dir, sub.clone().name(shown).bin_name(format!("{} {}", prefix.replace('-', " "), sub.get_name())))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let share = PathBuf::from(std::env::args_os().nth(1).context("usage: treeboot-gendocs SHAREDIR")?);
    let man = share.join("man/man8");
    std::fs::create_dir_all(&man).with_context(|| format!("Creating {}", man.display()))?;
    let mut cli = treeboot::cli::Cli::command().disable_help_subcommand(true);
    // Propagates the global options (--sysroot, --json, --quiet, --verbose)
    // to every verb, so that each verb's page lists them.
    cli.build();
    write_man(&man, cli.clone())?;
    write_verbs(&man, &cli, "treeboot")?;
    for cmd in early_binaries() {
        write_man(&man, cmd)?;
    }
    for (shell, rel) in [
        (Shell::Bash, "bash-completion/completions/treeboot"),
        (Shell::Zsh, "zsh/vendor-completions/_treeboot"),
        (Shell::Fish, "fish/vendor_completions.d/treeboot.fish"),
    ] {
        let path = share.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut f = std::fs::File::create(&path).with_context(|| format!("Writing {}", path.display()))?;
        clap_complete::generate(shell, &mut cli.clone(), "treeboot", &mut f);
    }
    Ok(())
}
