//! `cargo xtask bench`: run the criterion benches and summarise them in one table.

use crate::{flag_value, machine, root, run_cmd, write_atomic};

/// The markers around the criterion section of `docs/benchmarks.md`.
const BEGIN: &str = "<!-- cargo xtask bench: begin (generated; edits here are overwritten) -->";
const END: &str = "<!-- cargo xtask bench: end -->";
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One measured benchmark: its criterion id and the median time in nanoseconds.
struct Measured {
    group: String,
    function: String,
    value: String,
    median_ns: f64,
}

/// In-run baselines: `(baseline, compared)` where a measurement whose id matches `baseline`
/// (in group/function/value form, with the rest of the id equal) is the reference for the one
/// that matches `compared`. Function ids are matched exactly; a `prefix/` form strips a prefix.
const BASELINES: &[(&str, &str, &str)] = &[
    // (kind, baseline, compared)
    ("function", "hungarian", "jv"),
    ("function", "jv-auction", "jv"),
    ("prefix", "log-domain/", ""),
    // The step against its own matrix products, and those against matrixmultiply's.
    ("group", "bare_kernels_b256", "train_step_b256_threads1"),
    ("group", "bare_matmuls_b256", "bare_kernels_b256"),
];

/// The id of the measurement this one is a baseline for, if it is a baseline.
fn baseline_of(m: &Measured) -> Option<(String, String, String)> {
    for &(kind, base, compared) in BASELINES {
        match kind {
            "function" if m.function == base => {
                return Some((m.group.clone(), compared.into(), m.value.clone()));
            }
            "prefix" if m.function.starts_with(base) => {
                let rest = m.function[base.len()..].to_string();
                return Some((m.group.clone(), rest, m.value.clone()));
            }
            "group" if m.group == base => {
                return Some((compared.into(), m.function.clone(), m.value.clone()));
            }
            _ => {}
        }
    }
    None
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    // `--collect-only` summarises what criterion already stored in target/criterion (from
    // earlier `cargo bench` runs) without running anything.
    let collect_only = args.iter().any(|a| a == "--collect-only");
    let out = flag_value(args, "--out")?;
    let (warm, measure) = if quick { ("0.5", "1") } else { ("1", "3") };
    let source = if collect_only {
        "the criterion results already stored in target/criterion by earlier `cargo bench` \
         runs (each line's latest run: a line and its baseline may then come from different \
         runs, so the ratios are only as good as the machine was quiet)"
            .to_string()
    } else {
        let command = format!(
            "cargo bench --workspace --bench '*' -- --warm-up-time {warm} --measurement-time {measure}"
        );
        println!("running: {command}");
        run_cmd(Command::new("cargo").args([
            "bench",
            "--workspace",
            // Only the criterion benches: the libraries' test harnesses reject criterion's flags.
            "--bench",
            "*",
            "--",
            "--warm-up-time",
            warm,
            "--measurement-time",
            measure,
        ]))?;
        format!("a fresh `{command}`")
    };
    let measured = collect(&root().join("target/criterion"))?;
    let table = table(&measured);
    println!("{table}");
    if let Some(out) = out {
        let flags: String = args
            .iter()
            .filter(|a| *a == "--quick" || *a == "--collect-only")
            .map(|a| format!(" {a}"))
            .collect();
        let ratios = if collect_only {
            "Times are criterion medians."
        } else {
            "Times are criterion medians; a ratio compares a line with its baseline measured in \
             the same run."
        };
        let text = format!(
            "Machine: {}.\n\nCommand: `cargo xtask bench{flags}`, which \
             summarises {source}.\n{ratios}\n\n{table}\n",
            machine(),
        );
        // Only the criterion section is replaced: the sections other tasks write (bench-nflows,
        // bench-sbi) and notes written by hand in the same file stay.
        let old = std::fs::read_to_string(&out).unwrap_or_default();
        let old = if old.is_empty() {
            "# Benchmarks\n\n".to_string()
        } else {
            old
        };
        let text = crate::splice(&old, BEGIN, END, &text);
        write_atomic(Path::new(&out), &text)?;
        println!("wrote {out}");
    }
    Ok(())
}

/// Walks criterion's output folder for `new/benchmark.json` + `new/estimates.json` pairs.
fn collect(dir: &Path) -> Result<Vec<Measured>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(m) = read_one(&p)? {
                        found.push(m);
                    }
                } else if p.file_name().is_none_or(|n| n != "report") {
                    stack.push(p);
                }
            }
        }
    }
    found.sort_by(|a, b| (&a.group, &a.value, &a.function).cmp(&(&b.group, &b.value, &b.function)));
    Ok(found)
}

fn read_one(new_dir: &Path) -> Result<Option<Measured>> {
    let (b, e) = (
        new_dir.join("benchmark.json"),
        new_dir.join("estimates.json"),
    );
    if !b.exists() || !e.exists() {
        return Ok(None);
    }
    let bj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&b)?)
        .with_context(|| format!("parsing {}", b.display()))?;
    let ej: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&e)?)
        .with_context(|| format!("parsing {}", e.display()))?;
    let s = |k: &str| bj[k].as_str().unwrap_or("").to_string();
    Ok(ej["median"]["point_estimate"]
        .as_f64()
        .map(|median_ns| Measured {
            group: s("group_id"),
            function: s("function_id"),
            value: s("value_str"),
            median_ns,
        }))
}

fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn table(measured: &[Measured]) -> String {
    let mut bases: BTreeMap<(String, String, String), Vec<(String, f64)>> = BTreeMap::new();
    for m in measured {
        if let Some(key) = baseline_of(m) {
            let name = [m.group.as_str(), m.function.as_str()]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            bases.entry(key).or_default().push((name, m.median_ns));
        }
    }
    let mut s = String::from("| benchmark | median | against its baseline |\n|---|---|---|\n");
    for m in measured {
        let id = [m.group.as_str(), m.function.as_str(), m.value.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let key = (m.group.clone(), m.function.clone(), m.value.clone());
        let ratio = bases
            .get(&key)
            .map(|bs| {
                bs.iter()
                    .map(|(name, b)| {
                        let r = b / m.median_ns;
                        if r >= 1.0 {
                            format!("{r:.1}× faster than `{name}`")
                        } else {
                            format!("{:.2}× the time of `{name}`", m.median_ns / b)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        s.push_str(&format!("| {id} | {} | {ratio} |\n", human(m.median_ns)));
    }
    s
}
