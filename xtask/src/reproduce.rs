//! `cargo xtask reproduce`: the published 2-D results, through the `fm` binary.

use anyhow::{Result, bail};

pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!(
        "`cargo xtask reproduce` needs the `fm train`/`fm eval` commands, which are not built yet"
    )
}
