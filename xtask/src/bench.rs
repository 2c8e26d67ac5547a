//! `cargo xtask bench`: run the criterion benches and summarise them in one table.

use crate::{flag_value, machine, root, run_cmd, write_atomic};
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

/// Which function of a group is the in-run baseline of the others (matched by substring).
const BASELINES: &[&str] = &["pathfinding", "baseline", "matmul_floor", "reference"];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let out = flag_value(args, "--out")?;
    let (warm, measure) = if quick { ("0.5", "1") } else { ("1", "3") };
    let command =
        format!("cargo bench --workspace -- --warm-up-time {warm} --measurement-time {measure}");
    println!("running: {command}");
    run_cmd(Command::new("cargo").args([
        "bench",
        "--workspace",
        "--",
        "--warm-up-time",
        warm,
        "--measurement-time",
        measure,
    ]))?;
    let measured = collect(&root().join("target/criterion"))?;
    let table = table(&measured);
    println!("{table}");
    if let Some(out) = out {
        let text = format!(
            "# Benchmarks\n\nMachine: {}.\n\nCommand: `cargo xtask bench{}` (which runs `{command}`).\n\
             Times are criterion medians; a ratio compares a line with the baseline of its group\n\
             measured in the same run.\n\n{table}\n",
            machine(),
            if quick { " --quick" } else { "" },
        );
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
    // Baseline per (group, value).
    let mut base: BTreeMap<(&str, &str), (&str, f64)> = BTreeMap::new();
    for m in measured {
        if BASELINES.iter().any(|b| m.function.contains(b)) {
            base.insert((&m.group, &m.value), (&m.function, m.median_ns));
        }
    }
    let mut s = String::from(
        "| benchmark | median | time ÷ in-run baseline (<1 is faster) |\n|---|---|---|\n",
    );
    for m in measured {
        let id = [m.group.as_str(), m.function.as_str(), m.value.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let ratio = match base.get(&(m.group.as_str(), m.value.as_str())) {
            Some((name, b)) if !BASELINES.iter().any(|x| m.function.contains(x)) => {
                format!(
                    "{:.3} of `{name}` ({:.1}× speed-up)",
                    m.median_ns / b,
                    b / m.median_ns
                )
            }
            Some(_) => "baseline".into(),
            None => String::new(),
        };
        s.push_str(&format!("| {id} | {} | {ratio} |\n", human(m.median_ns)));
    }
    s
}
