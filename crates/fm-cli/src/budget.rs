//! Memory estimates: before a command allocates, it adds up what its flags make it hold and
//! refuses (exit 2) when that exceeds the memory limit, naming the flag, the estimate and the
//! limit — instead of dying on an allocation failure later.
//!
//! The limit is `--memory-limit SIZE` if given, else the environment variable
//! `FM_MEMORY_LIMIT`, else 80% of the physical memory (`MemTotal` of `/proc/meminfo`; 8 GiB where
//! that cannot be read). SIZE is a byte count with an optional K, M, G or T suffix (powers of
//! 1024), e.g. `512M`, `16G`.
//!
//! The estimates are deliberately generous (every buffer the step holds at once, counted with
//! its copies); they decide only whether a command may start, never its results.

use crate::input;
use anyhow::Result;
use std::sync::OnceLock;

/// The environment variable that sets the memory limit.
pub const ENV: &str = "FM_MEMORY_LIMIT";
/// The fraction of physical memory used as the default limit.
const DEFAULT_FRACTION: f64 = 0.8;
/// The default limit where the physical memory cannot be read.
const FALLBACK_BYTES: f64 = 8.0 * GIB;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

static FLAG: OnceLock<Option<String>> = OnceLock::new();

/// Records `--memory-limit` (called once, before any command runs).
pub fn set_flag(v: Option<String>) {
    let _ = FLAG.set(v);
}

/// The memory limit in bytes and where it comes from.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Bytes.
    pub bytes: f64,
    /// Where the figure comes from, for messages.
    pub source: String,
}

/// Parses a size: digits (or a float such as `1e9`) with an optional K/M/G/T suffix.
pub fn parse_size(s: &str) -> Option<f64> {
    let t = s.trim();
    let (num, mul) = match t.chars().last()?.to_ascii_uppercase() {
        'K' => (&t[..t.len() - 1], 1024.0),
        'M' => (&t[..t.len() - 1], 1024.0 * 1024.0),
        'G' => (&t[..t.len() - 1], GIB),
        'T' => (&t[..t.len() - 1], GIB * 1024.0),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mul)
}

/// The limit in force (see the module docs).
pub fn limit() -> Result<Limit> {
    if let Some(Some(v)) = FLAG.get() {
        let bytes = parse_size(v).ok_or_else(|| {
            input(format!(
                "invalid --memory-limit {v}: give a size such as 512M or 16G"
            ))
        })?;
        return Ok(Limit {
            bytes,
            source: format!("--memory-limit {v}"),
        });
    }
    if let Ok(v) = std::env::var(ENV) {
        let bytes = parse_size(&v).ok_or_else(|| {
            input(format!(
                "invalid {ENV}={v}: give a size such as 512M or 16G"
            ))
        })?;
        return Ok(Limit {
            bytes,
            source: format!("{ENV}={v}"),
        });
    }
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb * 1024.0)
    });
    Ok(match total {
        Some(t) => Limit {
            bytes: DEFAULT_FRACTION * t,
            source: format!("80% of the {} of physical memory", human(t)),
        },
        None => Limit {
            bytes: FALLBACK_BYTES,
            source: "the default when the physical memory is unknown".into(),
        },
    })
}

/// A size for people: `8.0 TiB`.
pub fn human(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// What a command will hold at once: named parts, each blamed on the flag that sizes it.
#[derive(Debug, Default)]
pub struct Need {
    parts: Vec<(String, &'static str, f64)>,
}

impl Need {
    /// Adds `bytes` for `what`, sized by `flag`.
    pub fn add(&mut self, what: impl Into<String>, flag: &'static str, bytes: f64) {
        self.parts.push((what.into(), flag, bytes));
    }

    /// The total in bytes.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.2).sum()
    }

    /// An input error (exit 2) if the total exceeds `limit`, naming the largest part's flag.
    pub fn check(&self, limit: &Limit) -> Result<()> {
        let total = self.total();
        if total <= limit.bytes {
            return Ok(());
        }
        let (what, flag, bytes) = self
            .parts
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .cloned()
            .unwrap_or_default();
        Err(input(format!(
            "not enough memory: {what} would take about {} (of an estimated {} in all), above the memory limit of {} ({}); lower {flag}, or raise the limit with --memory-limit SIZE or {ENV}=SIZE",
            human(bytes),
            human(total),
            human(limit.bytes),
            limit.source
        )))
    }
}

/// Parameters of an MLP from `dim` (plus one time input) through `hidden` back to `dim`.
pub fn mlp_params(dim: usize, hidden: &[usize]) -> f64 {
    let mut widths = vec![dim as f64 + 1.0];
    widths.extend(hidden.iter().map(|&h| h as f64));
    widths.push(dim as f64);
    widths.windows(2).map(|w| (w[0] + 1.0) * w[1]).sum()
}

/// The widths the network's activations hold per point.
fn activation_width(dim: usize, hidden: &[usize]) -> f64 {
    2.0 * dim as f64 + 1.0 + hidden.iter().map(|&h| h as f64).sum::<f64>()
}

/// `fm train`: the network with its gradient, Adam moments, EMA and checkpoint copies; the
/// activations of a batch; the batches prepared ahead; the couplings' cost matrices.
pub fn train_need(
    dim: usize,
    hidden: &[usize],
    batch: usize,
    coupling_matrices: f64,
    threads: usize,
) -> Need {
    let b = batch as f64;
    let t = threads as f64;
    let in_flight = if threads >= 2 { 3.0 * t + 2.0 } else { 1.0 };
    let mut need = Need::default();
    need.add(
        format!(
            "the network ({} weights of d = {dim})",
            mlp_params(dim, hidden)
        ),
        "--hidden",
        12.0 * 4.0 * mlp_params(dim, hidden),
    );
    need.add(
        "the activations of a batch",
        "--batch",
        8.0 * 4.0 * b * activation_width(dim, hidden),
    );
    need.add(
        format!("the batches prepared ahead (d = {dim})"),
        "--batch",
        in_flight * 8.0 * b * (6.0 * dim as f64 + 1.0),
    );
    if coupling_matrices > 0.0 {
        need.add(
            format!("the coupling's {batch} × {batch} cost matrices"),
            "--batch",
            coupling_matrices * t.min(in_flight) * 8.0 * b * b,
        );
    }
    need
}

/// Sampling `rows` points at once: the solver's stages and the network's activations.
pub fn integrate_need(rows: usize, dim: usize, hidden: &[usize], stages: usize) -> Need {
    let r = rows as f64;
    let mut need = Need::default();
    need.add(
        format!("the solver's {stages} stages for {rows} points of d = {dim}"),
        "--n",
        (stages as f64 + 4.0) * 8.0 * r * dim as f64,
    );
    need.add(
        "the network's activations",
        "--n",
        3.0 * 4.0 * r * activation_width(dim, hidden),
    );
    need
}

/// The stages a solver holds (its evaluations per step).
pub fn stages(solver: &str) -> usize {
    match solver.to_ascii_lowercase().as_str() {
        "euler" => 1,
        "midpoint" | "heun" => 2,
        "rk4" => 4,
        _ => 7,
    }
}

/// The chunk of points a fixed-step sampler integrates at once: all `n` if they fit in a
/// quarter of the limit, else the largest power of two that does (at least 1024).
pub fn chunk_rows(n: usize, dim: usize, hidden: &[usize], stages: usize, limit: &Limit) -> usize {
    let per_row = integrate_need(1, dim, hidden, stages).total();
    let fit = (limit.bytes / 4.0 / per_row.max(1.0)).floor();
    if fit >= n as f64 {
        return n;
    }
    let mut c = 1024usize;
    while ((c * 2) as f64) <= fit {
        c *= 2;
    }
    c.min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512M"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_size("2g"), Some(2.0 * GIB));
        assert_eq!(parse_size("1e9"), Some(1e9));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn mlp_params_counts_weights_and_biases() {
        // 3 → 4 → 2 with a time input: (3 + 1) × 4 + 4 + (4 + 1) × 2... computed by hand:
        // layer 1: in 2 + 1 = 3, (3 + 1) × 4 = 16; layer 2: (4 + 1) × 2 = 10.
        assert_eq!(mlp_params(2, &[4]), 26.0);
    }

    #[test]
    fn the_largest_part_is_blamed() {
        let limit = Limit {
            bytes: 1000.0,
            source: "test".into(),
        };
        let mut n = Need::default();
        n.add("small", "--a", 10.0);
        n.add("big", "--b", 2000.0);
        let e = n.check(&limit).unwrap_err().to_string();
        assert!(
            e.contains("big") && e.contains("--b") && e.contains("test"),
            "{e}"
        );
        let mut ok = Need::default();
        ok.add("x", "--a", 999.0);
        assert!(ok.check(&limit).is_ok());
    }
}
