use clap::Parser;

fn main() {
    let cli = treeboot::cli::Cli::parse();
    if let Err(e) = treeboot::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
