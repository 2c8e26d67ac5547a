//! `cargo xtask reproduce --task mixture6d`: I-CFM on a 6-D Gaussian mixture beside TorchCFM
//! (issue 20), a regression benchmark for sample quality in more than two dimensions.
//!
//! The mixture is the one of `docs/results-6d.md` (8 components, unequal weights, rotated
//! covariances), ported as numbers; train and test rows are drawn here from fixed seeds with a
//! self-contained generator, so every run sees the same split. Training, sampling and W2 go
//! through the `fm` binary (`fm train`, `fm sample`, `fm eval --samples`), as in the rest of
//! `reproduce`; the per-component weights and the true log-density of the samples are computed
//! here from the known density. The generated table replaces the part of `docs/results-6d.md`
//! between two marker lines and leaves the rest of that file as it is.

#![allow(
    clippy::needless_range_loop,
    reason = "6×6 matrix loops read as the formulas (L Lᵀ = C, forward substitution)"
)]

use crate::{flag_value, machine, root, run_cmd, write_atomic};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Dimension of the mixture.
const D: usize = 6;
/// Number of components.
const K: usize = 8;
/// Component weights.
const WEIGHTS: [f64; K] = [0.26, 0.19, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04];
/// Component means (from `gen_mixture.py`, numpy seed 20).
const MEANS: [[f64; D]; K] = [
    [
        -1.7593922989587254,
        -0.31082632157646284,
        -3.026242459388465,
        0.18086681375145996,
        -0.7266527298063608,
        -3.4268836223626806,
    ],
    [
        -3.2082665934517456,
        3.8903069117339752,
        1.5525430588606932,
        -0.41049231789505036,
        1.121414468718096,
        -1.8360891483640218,
    ],
    [
        -1.5850082641443022,
        -3.413263459586899,
        -3.5793154310200546,
        2.459801026835751,
        2.506442686317463,
        -3.9602271003246567,
    ],
    [
        -1.3595572472200201,
        -3.2873051471123,
        -0.2564247376844504,
        0.9415156790403971,
        0.40838450362204437,
        -2.927505020174088,
    ],
    [
        1.6195426926807643,
        0.9037552478739856,
        -0.2605971388349744,
        -1.6229828772485897,
        3.3471510721402344,
        -3.332482415928161,
    ],
    [
        -2.841893810292672,
        -0.9714339777849768,
        -1.9262092444407806,
        0.9296770473965532,
        1.5564351078729457,
        1.6311544423983868,
    ],
    [
        2.191088506321556,
        -2.5981096341951977,
        1.9705114811869944,
        -2.0316088825585483,
        0.28801954847921607,
        -2.230683407744083,
    ],
    [
        2.49739704493281,
        -3.1368442190149466,
        -0.5532972833146115,
        1.0697481342871509,
        1.5793852479522137,
        -3.2370476147348457,
    ],
];
/// Component covariances `Q diag(s²) Qᵀ` (from `gen_mixture.py`, numpy seed 20).
const COVS: [[[f64; D]; D]; K] = [
    [
        [
            0.36905601451710607,
            0.02551128026654096,
            -0.0060776376143398415,
            -0.0333890306938743,
            0.0574711639240113,
            0.1208543788757656,
        ],
        [
            0.02551128026654096,
            0.1942617539174375,
            0.0740848954025752,
            -0.030068488724478717,
            0.006718059008198056,
            -0.003456719584395126,
        ],
        [
            -0.006077637614339845,
            0.0740848954025752,
            0.32536004660207596,
            -0.0037282460960672828,
            0.06449041644187438,
            0.09872010582508425,
        ],
        [
            -0.0333890306938743,
            -0.030068488724478714,
            -0.0037282460960672828,
            0.12207635044661493,
            0.006662710044865382,
            0.00248825297102249,
        ],
        [
            0.057471163924011276,
            0.006718059008198046,
            0.06449041644187438,
            0.006662710044865382,
            0.2956851501717192,
            0.10811807134526574,
        ],
        [
            0.12085437887576557,
            -0.0034567195843951282,
            0.09872010582508424,
            0.002488252971022498,
            0.10811807134526573,
            0.3014359774000037,
        ],
    ],
    [
        [
            0.3172144145917734,
            0.07392943608179306,
            -0.163397426105423,
            0.0985654082034951,
            -0.1871987102271505,
            0.054793859110185625,
        ],
        [
            0.07392943608179305,
            0.1626053947196726,
            -0.0716523443856491,
            0.07422767967155383,
            -0.04410507185237253,
            0.06907633797558013,
        ],
        [
            -0.16339742610542296,
            -0.0716523443856491,
            0.4169632884605489,
            -0.1181915503702905,
            0.07199208311081265,
            -0.005214029584197569,
        ],
        [
            0.0985654082034951,
            0.07422767967155383,
            -0.11819155037029051,
            0.1459309379794595,
            -0.023726561892230696,
            0.05129695810215522,
        ],
        [
            -0.1871987102271505,
            -0.04410507185237252,
            0.07199208311081264,
            -0.02372656189223069,
            0.1752157128368343,
            -0.038930505642872516,
        ],
        [
            0.05479385911018562,
            0.06907633797558013,
            -0.005214029584197566,
            0.05129695810215522,
            -0.038930505642872516,
            0.13396358451698218,
        ],
    ],
    [
        [
            0.17713527613961302,
            0.00656244570722843,
            -0.10821785267857739,
            -0.10006262752954972,
            0.015005201085902729,
            -0.013054588814610576,
        ],
        [
            0.006562445707228429,
            0.3525419328380697,
            -0.15325153121335808,
            0.0514025965874971,
            0.10648543160943333,
            -0.061349494929257994,
        ],
        [
            -0.10821785267857739,
            -0.15325153121335808,
            0.2843340958457943,
            -0.04363760032103551,
            0.12127959608446656,
            0.06622801595150261,
        ],
        [
            -0.10006262752954972,
            0.0514025965874971,
            -0.04363760032103551,
            0.26711144571387113,
            -0.21350952739432102,
            -0.008723947706094363,
        ],
        [
            0.015005201085902723,
            0.10648543160943334,
            0.12127959608446658,
            -0.21350952739432102,
            0.5174201076912438,
            0.05863749630978713,
        ],
        [
            -0.013054588814610583,
            -0.061349494929258,
            0.06622801595150261,
            -0.008723947706094363,
            0.05863749630978713,
            0.13299216563460792,
        ],
    ],
    [
        [
            0.2687583032523622,
            -0.04201796626295722,
            -0.04436573401810077,
            0.023400387963122583,
            0.10360396973471253,
            0.01306204150884821,
        ],
        [
            -0.04201796626295722,
            0.5257259662795619,
            -0.06132056682948124,
            -0.031083742835573722,
            -0.01154458119397029,
            0.10519702426001994,
        ],
        [
            -0.04436573401810077,
            -0.06132056682948125,
            0.3686583970995912,
            0.11459140415860734,
            0.054562282172617986,
            0.02610999598447534,
        ],
        [
            0.023400387963122608,
            -0.03108374283557371,
            0.11459140415860733,
            0.39263759691272726,
            -0.10826942486895391,
            -0.011252030538414814,
        ],
        [
            0.10360396973471256,
            -0.011544581193970295,
            0.054562282172617986,
            -0.10826942486895391,
            0.42729643722979804,
            0.027782845514468735,
        ],
        [
            0.013062041508848212,
            0.10519702426001998,
            0.026109995984475307,
            -0.01125203053841483,
            0.02778284551446874,
            0.5379488635189911,
        ],
    ],
    [
        [
            0.21933082614666388,
            0.11496453144859535,
            -0.16068212986967634,
            0.034350495384032,
            0.05303025173763673,
            -0.18113211849630304,
        ],
        [
            0.11496453144859534,
            0.31688428140569447,
            -0.1815958656521382,
            -0.012171167275166761,
            -0.10413191762641122,
            0.00819439577894732,
        ],
        [
            -0.16068212986967634,
            -0.18159586565213817,
            0.28251395248269784,
            0.0010651892968335482,
            0.040037214786316534,
            0.010541660262680618,
        ],
        [
            0.034350495384032,
            -0.01217116727516677,
            0.0010651892968335447,
            0.13140494757837995,
            0.06282337668466292,
            -0.01084080724808956,
        ],
        [
            0.05303025173763672,
            -0.10413191762641122,
            0.040037214786316555,
            0.06282337668466292,
            0.19053438164408068,
            -0.16217122230202555,
        ],
        [
            -0.181132118496303,
            0.008194395778947304,
            0.010541660262680616,
            -0.010840807248089558,
            -0.16217122230202555,
            0.44329547589534646,
        ],
    ],
    [
        [
            0.19800511559755582,
            -0.021449224150572776,
            -0.03221168661899372,
            0.015795293251496614,
            -0.009646576115212342,
            0.008720912738946634,
        ],
        [
            -0.021449224150572772,
            0.24994769259634883,
            0.06411606394875333,
            -0.017950174709102124,
            0.029043663745490538,
            -0.16789728080674585,
        ],
        [
            -0.03221168661899373,
            0.06411606394875333,
            0.2862982915727835,
            0.13805966475836168,
            -0.1264378378225427,
            -0.05737321701496966,
        ],
        [
            0.015795293251496614,
            -0.017950174709102124,
            0.13805966475836165,
            0.37196453283613073,
            -0.15502337551172515,
            -0.017189871581606134,
        ],
        [
            -0.00964657611521234,
            0.02904366374549053,
            -0.1264378378225427,
            -0.15502337551172518,
            0.1734708431172196,
            -0.07923971804405465,
        ],
        [
            0.008720912738946636,
            -0.16789728080674587,
            -0.05737321701496967,
            -0.017189871581606127,
            -0.07923971804405465,
            0.3118492271509447,
        ],
    ],
    [
        [
            0.49166568262130494,
            0.05908389409506282,
            -0.047619108005438435,
            0.09084469225493398,
            0.21357447784703698,
            -0.03772107298227507,
        ],
        [
            0.05908389409506284,
            0.46408294654405907,
            -0.09775302125748456,
            0.06172106396571063,
            -0.021067254803745446,
            0.01122156780601474,
        ],
        [
            -0.047619108005438435,
            -0.09775302125748456,
            0.14608893486290922,
            -0.052333959832969824,
            0.031952267328340285,
            0.008160946293845247,
        ],
        [
            0.09084469225493401,
            0.06172106396571063,
            -0.05233395983296983,
            0.43545252828894493,
            0.10283751374482501,
            -0.05071521121327197,
        ],
        [
            0.21357447784703698,
            -0.021067254803745442,
            0.03195226732834028,
            0.102837513744825,
            0.38685666336920826,
            -0.015752502200440666,
        ],
        [
            -0.037721072982275075,
            0.011221567806014736,
            0.008160946293845246,
            -0.05071521121327197,
            -0.015752502200440662,
            0.11499719758818705,
        ],
    ],
    [
        [
            0.3026036790106765,
            -0.10839665225187879,
            0.20777196110163443,
            0.043787622419739304,
            0.05061863420988742,
            0.00039361473704762,
        ],
        [
            -0.10839665225187879,
            0.3505983705150301,
            -0.05797363692624981,
            0.2814403749711338,
            -0.07652366876122065,
            -0.04364688145123515,
        ],
        [
            0.20777196110163443,
            -0.05797363692624981,
            0.3696993434144372,
            0.12992761462286045,
            -0.013941639419316726,
            0.10838268543603805,
        ],
        [
            0.04378762241973931,
            0.2814403749711338,
            0.12992761462286045,
            0.4650256776292236,
            -0.09104898790693372,
            -0.02232414710086448,
        ],
        [
            0.05061863420988742,
            -0.07652366876122063,
            -0.013941639419316728,
            -0.09104898790693372,
            0.1472557263054342,
            -0.10863204351770503,
        ],
        [
            0.00039361473704762603,
            -0.04364688145123515,
            0.10838268543603806,
            -0.022324147100864476,
            -0.10863204351770504,
            0.4109956811364032,
        ],
    ],
];

/// Rows of the fixed train and test sets.
const N_TRAIN: usize = 10_000;
const N_TEST: usize = 10_000;
/// Generator seeds of the train and test rows.
const TRAIN_SEED: u64 = 1;
const TEST_SEED: u64 = 2;
/// Points per evaluation draw, and draws per model.
const EVAL_N: usize = 2_000;
const DRAWS: u64 = 5;
/// The budget of the (TorchCFM's) set-up.
const FULL_STEPS: usize = 20_000;
/// The default (smoke-test) budget.
const DEFAULT_STEPS: usize = 1_000;

/// Markers delimiting the generated section of the results file.
const BEGIN: &str = "<!-- cargo xtask reproduce --task mixture6d: begin (generated; edits here are overwritten) -->";
const END: &str = "<!-- cargo xtask reproduce --task mixture6d: end -->";

/// TorchCFM 1.0.7's measured figures at the full budget (docs/results-6d.md): W2 of seeds 0, 1, 2
/// averaged over five source draws, the largest weight error per seed (pp), the component
/// weights averaged over the three seeds, the mean true log-density of the samples, and the
/// floor on that data. Measured on the numpy-drawn split of `scripts/mixture6d/gen_mixture.py`.
const TORCH_W2: [f64; 3] = [1.057, 1.346, 1.134];
const TORCH_MAX_ERR_PP: [f64; 3] = [2.86, 3.18, 2.95];
const TORCH_WEIGHTS: [f64; K] = [
    0.2703, 0.1742, 0.1477, 0.1264, 0.1048, 0.0780, 0.0585, 0.0401,
];
const TORCH_TRUE_LL: f64 = -6.82;
const TORCH_FLOOR: f64 = 1.047;

/// SplitMix64: a small, fully specified generator, so the data do not depend on a crate's
/// version (same seed, same bits, on every machine).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box–Muller (one of the pair; simple beats fast here).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Lower Cholesky factor of a symmetric positive definite matrix.
fn cholesky(c: &[[f64; D]; D]) -> Result<[[f64; D]; D]> {
    let mut l = [[0.0; D]; D];
    for i in 0..D {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = c[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    bail!("mixture covariance is not positive definite (pivot {i}: {d})");
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (c[i][j] - s) / l[j][j];
            }
        }
    }
    Ok(l)
}

/// The mixture with its Cholesky factors.
pub(crate) struct Mixture {
    chol: [[[f64; D]; D]; K],
    /// log w_k − ½ log det C_k − (D/2) log 2π.
    log_norm: [f64; K],
}

impl Mixture {
    pub(crate) fn new() -> Result<Self> {
        let mut chol = [[[0.0; D]; D]; K];
        let mut log_norm = [0.0; K];
        for k in 0..K {
            chol[k] = cholesky(&COVS[k])?;
            let log_det: f64 = (0..D).map(|i| 2.0 * chol[k][i][i].ln()).sum();
            log_norm[k] =
                WEIGHTS[k].ln() - 0.5 * log_det - 0.5 * D as f64 * (std::f64::consts::TAU).ln();
        }
        Ok(Self { chol, log_norm })
    }

    /// `n` rows drawn with the generator seeded by `seed`.
    pub(crate) fn draw(&self, n: usize, seed: u64) -> Vec<[f64; D]> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| {
                let u = rng.uniform();
                let mut acc = 0.0;
                let mut k = K - 1;
                for (j, w) in WEIGHTS.iter().enumerate() {
                    acc += w;
                    if u < acc {
                        k = j;
                        break;
                    }
                }
                let e: [f64; D] = std::array::from_fn(|_| rng.normal());
                std::array::from_fn(|i| {
                    MEANS[k][i] + (0..=i).map(|j| self.chol[k][i][j] * e[j]).sum::<f64>()
                })
            })
            .collect()
    }

    /// log(w_k N(x; m_k, C_k)) for every component.
    fn component_log_prob(&self, x: &[f64; D]) -> [f64; K] {
        std::array::from_fn(|k| {
            // Forward substitution: L y = x − m_k, so the Mahalanobis term is |y|².
            let l = &self.chol[k];
            let mut y = [0.0; D];
            for i in 0..D {
                let s: f64 = (0..i).map(|j| l[i][j] * y[j]).sum();
                y[i] = (x[i] - MEANS[k][i] - s) / l[i][i];
            }
            self.log_norm[k] - 0.5 * y.iter().map(|v| v * v).sum::<f64>()
        })
    }

    /// Fraction of rows per component of highest responsibility, and the mean true
    /// log-density of the rows.
    pub(crate) fn stats(&self, rows: &[[f64; D]]) -> ([f64; K], f64) {
        let mut counts = [0usize; K];
        let mut ll = 0.0;
        for x in rows {
            let lp = self.component_log_prob(x);
            let (best, max) =
                lp.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bm), (i, &v)| {
                        if v > bm { (i, v) } else { (bi, bm) }
                    });
            counts[best] += 1;
            ll += max + lp.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        }
        let n = rows.len() as f64;
        (counts.map(|c| c as f64 / n), ll / n)
    }
}

pub(crate) fn write_csv(path: &Path, rows: &[[f64; D]]) -> Result<()> {
    let mut s = String::with_capacity(rows.len() * D * 20);
    for r in rows {
        let line: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, s).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn read_csv(path: &Path) -> Result<Vec<[f64; D]>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // `fm sample` writes a header line (`x0,x1,…`); a first line that is not numbers is one.
    let is_header = |l: &str| {
        l.split(',')
            .next()
            .is_some_and(|f| f.trim().parse::<f64>().is_err())
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .filter(|(i, l)| !(*i == 0 && is_header(l)))
        .map(|(i, l)| {
            let v: Vec<f64> = l
                .split(',')
                .map(|f| f.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("{} line {}: not numbers", path.display(), i + 1))?;
            <[f64; D]>::try_from(v.as_slice()).map_err(|_| {
                anyhow::anyhow!("{} line {}: expected {D} columns", path.display(), i + 1)
            })
        })
        .collect()
}

/// Runs `fm` and returns its JSON last line.
fn fm_json(fm: &Path, args: &[String]) -> Result<serde_json::Value> {
    crate::reproduce::fm_json(fm, args)
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// W2 of `fm eval --samples` between a file of exactly `EVAL_N` rows and a subsample of `target`.
fn eval_w2(fm: &Path, samples: &Path, target: &Path, seed: u64) -> Result<f64> {
    let e = fm_json(
        fm,
        &strings(&[
            "eval",
            "--samples",
            &samples.display().to_string(),
            "--target",
            &target.display().to_string(),
            "--n",
            &EVAL_N.to_string(),
            "--seed",
            &seed.to_string(),
            "--threads",
            "1",
        ]),
    )?;
    e["w2"]
        .as_f64()
        .with_context(|| format!("`w2` missing from fm eval's JSON: {e}"))
}

/// One trained seed, evaluated.
struct SeedResult {
    w2: f64,
    weights: [f64; K],
    max_err_pp: f64,
    true_ll: f64,
    train_seconds: f64,
    final_loss: Option<f64>,
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v.sqrt())
}

/// `cargo xtask reproduce --task mixture6d [--full | --steps N] [--seeds N] [--out FILE]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let full = args.iter().any(|a| a == "--full");
    let steps: usize = match flag_value(args, "--steps")? {
        Some(s) => s.parse().context("--steps takes a whole number")?,
        None if full => FULL_STEPS,
        None => DEFAULT_STEPS,
    };
    let seeds: usize = match flag_value(args, "--seeds")? {
        Some(s) => s.parse().context("--seeds takes a whole number")?,
        None => 3,
    };
    if steps == 0 || seeds == 0 {
        bail!("--steps and --seeds must be at least 1");
    }
    let out = flag_value(args, "--out")?.unwrap_or_else(|| "docs/results-6d.md".into());
    let command = format!("cargo xtask reproduce {}", args.join(" "));

    run_cmd(Command::new("cargo").args(["build", "--release", "-p", "fm-cli"]))?;
    let work = root().join("target/reproduce/mixture6d");
    std::fs::create_dir_all(&work)?;
    let fm = work.join("fm");
    std::fs::copy(root().join("target/release/fm"), &fm).context("copying the fm binary")?;

    let started = Instant::now();
    let mix = Mixture::new()?;
    let train = mix.draw(N_TRAIN, TRAIN_SEED);
    let test = mix.draw(N_TEST, TEST_SEED);
    let (train_path, test_path) = (work.join("train.csv"), work.join("test.csv"));
    write_csv(&train_path, &train)?;
    write_csv(&test_path, &test)?;
    let (train_weights, _) = mix.stats(&train);
    let (test_weights, test_ll) = mix.stats(&test);

    // Floor: train vs test, both subsampled (independent draws inside `fm eval`).
    let mut floor = Vec::new();
    for r in 0..DRAWS {
        floor.push(eval_w2(&fm, &train_path, &test_path, 500 + r)?);
    }
    let floor = mean_sd(&floor);
    println!("floor (train vs test): W2 {:.3} ± {:.3}", floor.0, floor.1);

    let mut results = Vec::new();
    for seed in 0..seeds {
        let model = work.join(format!("icfm-{steps}-s{seed}.safetensors"));
        let t = fm_json(
            &fm,
            &strings(&[
                "train",
                "--source",
                "gaussian",
                "--target",
                &train_path.display().to_string(),
                "--matcher",
                "icfm",
                "--sigma",
                "0.1",
                "--hidden",
                "256,256,256",
                "--activation",
                "selu",
                "--batch",
                "256",
                "--optimizer",
                "adam",
                "--lr",
                "1e-3",
                "--steps",
                &steps.to_string(),
                "--ema",
                "0",
                "--seed",
                &seed.to_string(),
                "--threads",
                "1",
                "--quiet",
                "--force",
                "--out",
                &model.display().to_string(),
            ]),
        )?;
        let mut w2s = Vec::new();
        let mut weights = [0.0; K];
        let mut lls = Vec::new();
        for r in 0..DRAWS {
            let draw = work.join(format!("icfm-{steps}-s{seed}-d{r}.csv"));
            fm_json(
                &fm,
                &strings(&[
                    "sample",
                    "--model",
                    &model.display().to_string(),
                    "--n",
                    &EVAL_N.to_string(),
                    "--solver",
                    "rk4",
                    "--steps",
                    "100",
                    "--seed",
                    &r.to_string(),
                    "--threads",
                    "1",
                    "--force",
                    "--out",
                    &draw.display().to_string(),
                ]),
            )?;
            w2s.push(eval_w2(&fm, &draw, &test_path, 900 + r)?);
            let rows = read_csv(&draw)?;
            if rows.len() != EVAL_N {
                bail!(
                    "{} has {} rows, expected {EVAL_N}",
                    draw.display(),
                    rows.len()
                );
            }
            let (w, ll) = mix.stats(&rows);
            for k in 0..K {
                weights[k] += w[k] / DRAWS as f64;
            }
            lls.push(ll);
        }
        let max_err_pp = (0..K)
            .map(|k| 100.0 * (weights[k] - WEIGHTS[k]).abs())
            .fold(0.0, f64::max);
        let res = SeedResult {
            w2: mean_sd(&w2s).0,
            weights,
            max_err_pp,
            true_ll: mean_sd(&lls).0,
            train_seconds: t["wall_seconds"].as_f64().unwrap_or(f64::NAN),
            final_loss: t["final_loss"].as_f64(),
        };
        println!(
            "  seed {seed}: W2 {:.3} (draws {}), largest weight error {:.2} pp, true log-density {:.2}, train {:.0} s",
            res.w2,
            w2s.iter()
                .map(|w| format!("{w:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            res.max_err_pp,
            res.true_ll,
            res.train_seconds
        );
        results.push(res);
    }
    let total = started.elapsed().as_secs_f64();

    let section = table(
        &command,
        total,
        steps,
        floor,
        &train_weights,
        &test_weights,
        test_ll,
        &results,
    );
    let out_path = root().join(&out);
    let old = std::fs::read_to_string(&out_path).unwrap_or_default();
    let doc = crate::splice(&old, BEGIN, END, &section);
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&out_path, &doc)?;
    println!("{section}");
    println!("wrote {}", out_path.display());
    Ok(())
}

fn fmt_weights(w: &[f64; K]) -> String {
    w.iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::too_many_arguments)]
fn table(
    command: &str,
    total: f64,
    steps: usize,
    floor: (f64, f64),
    train_weights: &[f64; K],
    test_weights: &[f64; K],
    test_ll: f64,
    results: &[SeedResult],
) -> String {
    let mut s = String::new();
    let equal = steps == FULL_STEPS;
    let w2s: Vec<f64> = results.iter().map(|r| r.w2).collect();
    let (m, sd) = mean_sd(&w2s);
    let (tm, tsd) = mean_sd(&TORCH_W2);
    let _ = write!(
        s,
        "## Regression benchmark: `cargo xtask reproduce --task mixture6d`\n\n\
         Made by `{command}` in {total:.0} s on {} (every `fm` call single-threaded).\n\
         Regenerate with the same command; `--full` trains the issue's 20,000 steps (TorchCFM's\n\
         budget), the default is a {DEFAULT_STEPS}-step smoke test.\n\n\
         Data: the mixture above (weights, means and covariances ported as numbers into\n\
         `xtask/src/mixture6d.rs`), {N_TRAIN} train and {N_TEST} test rows drawn by the xtask's own\n\
         SplitMix64 generator (seeds {TRAIN_SEED} and {TEST_SEED}), so the split is fixed but not the\n\
         numpy draw TorchCFM was measured on. Training: `fm train --source gaussian --target train.csv\n\
         --matcher icfm --sigma 0.1 --hidden 256,256,256 --activation selu --batch 256 --optimizer adam\n\
         --lr 1e-3 --steps {steps} --ema 0 --seed S --threads 1`. Evaluation per seed: five draws\n\
         (`fm sample --solver rk4 --steps 100 --n {EVAL_N} --seed r`, r = 0…4), each scored by\n\
         `fm eval --samples … --target test.csv --n {EVAL_N} --seed 900+r` (exact W2 against an\n\
         independent {EVAL_N}-row test subsample), W2 averaged over the five draws; component\n\
         weights by highest responsibility under the true density, averaged over the draws.\n\
         Floor: `fm eval --samples train.csv --target test.csv --n {EVAL_N} --seed 500+r`, five\n\
         draws: **W2 = {:.3}** (sd over draws {:.3}).\n\n",
        machine(),
        floor.0,
        floor.1,
    );
    s.push_str("| | steps | W2 per seed | mean ± sd | mean − floor | largest weight error per seed (pp) | mean true log-density of samples |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    let _ = writeln!(
        s,
        "| TorchCFM 1.0.7 (measured, see above) | {FULL_STEPS} | {} | {tm:.3} ± {tsd:.3} | {:+.3} | {} | {TORCH_TRUE_LL:.2} |",
        TORCH_W2.map(|w| format!("{w:.3}")).join(", "),
        tm - TORCH_FLOOR,
        TORCH_MAX_ERR_PP.map(|w| format!("{w:.2}")).join(", "),
    );
    let _ = writeln!(
        s,
        "| ours (this run) | {steps} | {} | {m:.3} ± {sd:.3} | {:+.3} | {} | {:.2} |",
        w2s.iter()
            .map(|w| format!("{w:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        m - floor.0,
        results
            .iter()
            .map(|r| format!("{:.2}", r.max_err_pp))
            .collect::<Vec<_>>()
            .join(", "),
        mean_sd(&results.iter().map(|r| r.true_ll).collect::<Vec<_>>()).0,
    );
    let _ = writeln!(
        s,
        "\nTest set's own mean true log-density: {test_ll:.2}. TorchCFM's \"mean − floor\" is against \
         its own split's floor ({TORCH_FLOOR:.3}); ours against this split's floor ({:.3}). \
         TorchCFM's row is quoted, not rerun: measured (section above) by `python torch_train.py SEED \
         runs/torch-base-sSEED.pt` (SEED = 0, 1, 2) and `python evaluate.py --floor \
         runs/torch-base-s{{0,1,2}}.pt` in `scripts/mixture6d/` (RK4, 100 steps, POT's exact emd2, five \
         draws of {EVAL_N}).",
        floor.0
    );
    let mut ours_w = [0.0; K];
    for r in results {
        for k in 0..K {
            ours_w[k] += r.weights[k] / results.len() as f64;
        }
    }
    s.push_str(
        "\nComponent weights (fraction of points per component of highest responsibility):\n\n",
    );
    s.push_str("| | weights |\n| --- | --- |\n");
    let _ = writeln!(s, "| true | {} |", fmt_weights(&WEIGHTS));
    let _ = writeln!(s, "| train rows | {} |", fmt_weights(train_weights));
    let _ = writeln!(s, "| test rows | {} |", fmt_weights(test_weights));
    let _ = writeln!(
        s,
        "| TorchCFM, {FULL_STEPS} steps, mean of 3 seeds (measured) | {} |",
        fmt_weights(&TORCH_WEIGHTS)
    );
    let _ = writeln!(
        s,
        "| ours, {steps} steps, mean of {} seed(s) | {} |",
        results.len(),
        fmt_weights(&ours_w)
    );
    let losses: Vec<String> = results
        .iter()
        .map(|r| r.final_loss.map_or("—".into(), |l| format!("{l:.3}")))
        .collect();
    let secs: Vec<String> = results
        .iter()
        .map(|r| format!("{:.0}", r.train_seconds))
        .collect();
    let _ = writeln!(
        s,
        "\nFinal training loss per seed: {}; training seconds per seed: {}.",
        losses.join(", "),
        secs.join(", ")
    );
    if equal {
        let verdict = if (m - tm).abs() <= tsd.max(sd) {
            "within"
        } else {
            "outside"
        };
        let _ = writeln!(
            s,
            "\nAt equal budget the difference of the means ({:+.3}) is {verdict} one seed sd \
             (TorchCFM {tsd:.3}, ours {sd:.3}).",
            m - tm
        );
    } else {
        let _ = writeln!(
            s,
            "\n**Not equal budget**: ours trained {steps} steps, TorchCFM's figure is at {FULL_STEPS}; \
             compare the two only after `--full`."
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log N(x; m, C) by Gaussian elimination on C (an oracle independent of the Cholesky path).
    fn log_normal_by_elimination(x: &[f64; D], m: &[f64; D], c: &[[f64; D]; D]) -> f64 {
        let mut a = *c;
        let mut b: [f64; D] = std::array::from_fn(|i| x[i] - m[i]);
        let d = b;
        let mut log_det = 0.0;
        for p in 0..D {
            let piv = (p..D)
                .max_by(|&i, &j| a[i][p].abs().total_cmp(&a[j][p].abs()))
                .unwrap();
            a.swap(p, piv);
            b.swap(p, piv);
            log_det += a[p][p].abs().ln();
            for i in p + 1..D {
                let f = a[i][p] / a[p][p];
                for j in p..D {
                    a[i][j] -= f * a[p][j];
                }
                b[i] -= f * b[p];
            }
        }
        let mut z = [0.0; D];
        for i in (0..D).rev() {
            let s: f64 = (i + 1..D).map(|j| a[i][j] * z[j]).sum();
            z[i] = (b[i] - s) / a[i][i];
        }
        let q: f64 = (0..D).map(|i| d[i] * z[i]).sum();
        -0.5 * (q + log_det + D as f64 * std::f64::consts::TAU.ln())
    }

    #[test]
    fn cholesky_factors_reproduce_the_covariances() {
        let mix = Mixture::new().unwrap();
        for k in 0..K {
            let l = &mix.chol[k];
            for i in 0..D {
                for j in 0..D {
                    let llt: f64 = (0..D).map(|p| l[i][p] * l[j][p]).sum();
                    assert!(
                        (llt - COVS[k][i][j]).abs() < 1e-12,
                        "component {k} ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn non_positive_definite_covariance_is_an_error() {
        let mut c = COVS[0];
        c[2][2] = -1.0;
        assert!(cholesky(&c).is_err());
    }

    #[test]
    fn component_log_prob_matches_elimination_oracle() {
        let mix = Mixture::new().unwrap();
        let mut rng = SplitMix64(7);
        for _ in 0..50 {
            let x: [f64; D] = std::array::from_fn(|_| 4.0 * rng.normal());
            let lp = mix.component_log_prob(&x);
            for k in 0..K {
                let want = WEIGHTS[k].ln() + log_normal_by_elimination(&x, &MEANS[k], &COVS[k]);
                assert!(
                    (lp[k] - want).abs() < 1e-9 * want.abs().max(1.0),
                    "{k}: {} vs {want}",
                    lp[k]
                );
            }
        }
    }

    #[test]
    fn draws_follow_the_mixture_and_repeat_with_the_seed() {
        let mix = Mixture::new().unwrap();
        let n = 20_000;
        let x = mix.draw(n, 3);
        assert_eq!(x, mix.draw(n, 3));
        assert_ne!(x[0], mix.draw(1, 4)[0]);
        // Per-component fractions (by responsibility; the components are well separated) within
        // five binomial standard deviations plus a small misassignment allowance.
        let (w, _) = mix.stats(&x);
        for k in 0..K {
            let sd = (WEIGHTS[k] * (1.0 - WEIGHTS[k]) / n as f64).sqrt();
            assert!(
                (w[k] - WEIGHTS[k]).abs() < 5.0 * sd + 0.005,
                "{k}: {} vs {}",
                w[k],
                WEIGHTS[k]
            );
        }
        // Mean of the rows equals Σ w_k m_k within five standard errors of the mixture's spread.
        for i in 0..D {
            let want: f64 = (0..K).map(|k| WEIGHTS[k] * MEANS[k][i]).sum();
            let got = x.iter().map(|r| r[i]).sum::<f64>() / n as f64;
            let var: f64 = x.iter().map(|r| (r[i] - got).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (got - want).abs() < 5.0 * (var / n as f64).sqrt(),
                "axis {i}"
            );
        }
    }

    #[test]
    fn splice_replaces_only_the_generated_section() {
        let first = crate::splice("# Title\n\nhand-written\n", BEGIN, END, "table one\n");
        assert!(first.starts_with("# Title\n\nhand-written\n"));
        assert!(first.contains("table one"));
        let second = crate::splice(&format!("{first}\nafter\n"), BEGIN, END, "table two\n");
        assert!(!second.contains("table one"));
        assert!(second.contains("table two"));
        assert!(second.starts_with("# Title\n\nhand-written\n"));
        assert!(second.trim_end().ends_with("after"));
        assert_eq!(
            crate::splice("", BEGIN, END, "t\n"),
            format!("{BEGIN}\nt\n{END}\n")
        );
    }

    #[test]
    fn csv_round_trips_bit_for_bit() {
        let dir = std::env::temp_dir().join(format!("xtask-m6d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.csv");
        let rows = Mixture::new().unwrap().draw(100, 9);
        write_csv(&p, &rows).unwrap();
        assert_eq!(read_csv(&p).unwrap(), rows);
        // A header line (as `fm sample` writes) is skipped; a bad row later is an error.
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("x0,x1,x2,x3,x4,x5\n{text}")).unwrap();
        assert_eq!(read_csv(&p).unwrap(), rows);
        std::fs::write(&p, format!("{text}x0,1,2,3,4,5\n")).unwrap();
        assert!(read_csv(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
