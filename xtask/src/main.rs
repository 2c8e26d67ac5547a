//! `cargo xtask …`: project automation.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help") => {
            println!("cargo xtask <task>\n\ntasks: (none yet)");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown xtask `{other}`; run `cargo xtask help`"),
    }
}
