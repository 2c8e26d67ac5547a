//! The `fm` command-line tool.

use clap::{Parser, Subcommand};

/// Flow matching from the command line.
#[derive(Parser)]
#[command(name = "fm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The built-in demo (the README's main job).
    Demo,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            let normal = flow_matching::core::StandardNormal::new(2)?;
            let x = normal.sample(4, &mut flow_matching::core::rng::seeded(0));
            println!(
                "flow-matching {}: the trainer is not built yet.",
                env!("CARGO_PKG_VERSION")
            );
            println!("four draws from the N(0, I) source:\n{x}");
        }
    }
    Ok(())
}
