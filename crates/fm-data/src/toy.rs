//! The built-in toy distributions and their `name:key=value,...` spec syntax.

use crate::DataError;
use ndarray::Array2;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::StandardNormal;
use std::f64::consts::PI;

/// Post-processing shared by the 2-D toys, applied after the raw generator:
/// optional standardisation `x ← (x − mean) / std` with the scalar mean and (unbiased) standard
/// deviation over *all* entries of the batch (as the DSB-style sets of the TorchCFM runner do),
/// then `x ← scale · x + shift`.
///
/// Spec keys: `standardize` (`true`/`false`), `scale`, `shift_x`, `shift_y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Standardise the batch first (scalar mean and std over all entries).
    pub standardize: bool,
    /// Multiplier applied after standardisation.
    pub scale: f64,
    /// Offset added last, per coordinate.
    pub shift: [f64; 2],
}

impl Default for Affine {
    fn default() -> Self {
        Self::scaled(1.0)
    }
}

impl Affine {
    /// `x ← scale · x`, no standardisation, no shift.
    pub const fn scaled(scale: f64) -> Self {
        Self {
            standardize: false,
            scale,
            shift: [0.0, 0.0],
        }
    }

    fn apply(&self, x: &mut Array2<f64>) {
        if self.standardize && x.len() >= 2 {
            let mean = x.mean().unwrap_or(0.0);
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
            let std = var.sqrt();
            let inv = if std > 0.0 { 1.0 / std } else { 1.0 };
            x.mapv_inplace(|v| (v - mean) * inv);
        }
        for mut row in x.rows_mut() {
            row[0] = self.scale * row[0] + self.shift[0];
            row[1] = self.scale * row[1] + self.shift[1];
        }
    }
}

/// How the two moons get their noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoonsStyle {
    /// torchdyn's `generate_moons`: one uniform shift `u ~ U[0, noise)` added to *both*
    /// coordinates of a point.
    Torchdyn,
    /// scikit-learn's `make_moons`: independent `N(0, noise²)` noise on each coordinate.
    Sklearn,
}

/// A built-in toy distribution with its parameters.
///
/// Every 2-D toy ends with an [`Affine`] post-processing step. The arcs of `Moons` and
/// `Circles` use evenly spaced angles (`n/2` points per arc, as torchdyn and scikit-learn do);
/// rows are returned in random order.
///
/// | spec name | definition | source |
/// |---|---|---|
/// | `gaussian` | `N(mean·1, std² I_dim)`, dim 2 (or the `dim_hint`), mean 0, std 1 | |
/// | `8gaussians` | 8 centres on a circle of radius 5, noise std `0.1^(1/4)` ≈ 0.562 (covariance √0.1·I) | TorchCFM `utils.sample_8gaussians` |
/// | `8gaussians-torchdyn` | radius 5, std 1 | TorchCFM runner `TorchDynDataModule("gaussians")` parameters |
/// | `8gaussians-dsb` | radius 4, std 0.5, then ×3 | TorchCFM runner `two_dim.data_distrib("8gaussians")` |
/// | `moons` | torchdyn moons, uniform shift noise 0.2, then ×3 − 1 | TorchCFM `utils.sample_moons` |
/// | `moons-sklearn` | scikit-learn moons, Gaussian noise 0.05, ×2, x −= 1 | TorchCFM runner `SKLearnDataModule("moons")` |
/// | `moons-dsb` | scikit-learn moons, noise 0.1, standardised, ×7 | TorchCFM runner `two_dim("moon")` |
/// | `scurve` | scikit-learn S-curve, noise 0.05, columns (0, 2), ×1.5 | TorchCFM runner `SKLearnDataModule("scurve")` |
/// | `scurve-dsb` | S-curve, noise 0.1, columns (0, 2), standardised, ×7 | TorchCFM runner `two_dim("scurve")` |
/// | `circles` | scikit-learn circles, factor 0.5, noise 0.05, ×3.5 | TorchCFM runner `SKLearnDataModule("circles")` |
/// | `circles-dsb` | circles, factor 0.5, no noise, ×10 | TorchCFM runner `two_dim("circle")` |
/// | `checkerboard` | FFJORD checkerboard, ×2 | FFJORD `toy_data` |
/// | `checkerboard-dsb` | checkerboard ×7.5 | TorchCFM runner `two_dim("checker")` |
/// | `spirals` | FFJORD two spirals (540°, jitter 0.5, /3, noise 0.1) | FFJORD `toy_data("2spirals")` |
/// | `pinwheel` | FFJORD pinwheel: 5 arms, radial std 0.3, tangential std 0.1, rate 0.25, ×2 | FFJORD `toy_data` |
/// | `pinwheel-dsb` | pinwheel ×7.5 | TorchCFM runner `two_dim("pinwheel")` |
/// | `swissroll` | scikit-learn swiss roll, noise 1, columns (0, 2), ×0.2 | FFJORD `toy_data` |
/// | `swissroll-dsb` | swiss roll, noise 0.1, standardised, ×7 | TorchCFM runner `two_dim("swiss")` |
/// | `swissroll-icnn` | swiss roll, noise 0.25, unscaled | TorchCFM runner `generators2d("swissroll")` |
///
/// Note on `8gaussians-torchdyn`: the runner passes radius 5 and std 1 to torchdyn's
/// `generate_gaussians`, whose loop in fact places the centres on the unit circle (it ignores the
/// radius); `8gaussians:radius=1,std=1` reproduces that literal behaviour.
#[derive(Debug, Clone, PartialEq)]
pub enum Toy {
    /// `N(mean·1, std² I_dim)`. Keys: `dim`, `mean`, `std`.
    Gaussian {
        /// The dimension (at least 1).
        dim: usize,
        /// The mean of every coordinate.
        mean: f64,
        /// The standard deviation of every coordinate (≥ 0).
        std: f64,
    },
    /// 8 equally weighted Gaussians centred at `radius·(cos kπ/4, sin kπ/4)`.
    /// Keys: `radius`, `std` and the [`Affine`] keys.
    EightGaussians {
        /// The radius of the circle of centres.
        radius: f64,
        /// The standard deviation of each component, per coordinate.
        std: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// Two interleaved half circles: outer `(cos θ, sin θ)`, inner `(1 − cos θ, 0.5 − sin θ)`,
    /// `θ` evenly spaced on `[0, π]`. Keys: `style` (`torchdyn`/`sklearn`), `noise` and the
    /// [`Affine`] keys.
    Moons {
        /// The kind of noise.
        style: MoonsStyle,
        /// The noise level (uniform width or Gaussian std).
        noise: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// The S-curve projected on its first and third coordinates:
    /// `t ~ U(−3π/2, 3π/2)`, `(sin t, sign(t)(cos t − 1)) + N(0, noise² I)`.
    /// Keys: `noise` and the [`Affine`] keys.
    SCurve {
        /// The Gaussian noise std.
        noise: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// Two concentric circles of radii 1 and `factor` with evenly spaced angles, plus
    /// `N(0, noise² I)`. Keys: `factor`, `noise` and the [`Affine`] keys.
    Circles {
        /// The inner radius, in (0, 1).
        factor: f64,
        /// The Gaussian noise std.
        noise: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// The FFJORD checkerboard: uniform on the 8 cells of `[−2, 2)²` whose integer parts have an
    /// even sum. Keys: the [`Affine`] keys.
    Checkerboard {
        /// Post-processing.
        affine: Affine,
    },
    /// Two spirals (FFJORD): `r = √U · max_angle` (radians), arm `±(−r cos r + J₁, r sin r + J₂) / 3`
    /// with `J ~ U[0, jitter)²`, plus `N(0, noise² I)`. Keys: `max_angle` (degrees), `jitter`,
    /// `noise` and the [`Affine`] keys. Unlike FFJORD, the two arms are drawn independently
    /// (FFJORD mirrors the same points).
    Spirals {
        /// The largest angle, in degrees.
        max_angle: f64,
        /// The width of the uniform jitter.
        jitter: f64,
        /// The Gaussian noise std (after the division by 3).
        noise: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// The FFJORD pinwheel: `f = (1 + radial_std·z₁, tangential_std·z₂)` rotated by
    /// `2πk/arms + rate·exp(f₁)` for a balanced arm label `k`. Keys: `arms`, `radial_std`,
    /// `tangential_std`, `rate` and the [`Affine`] keys.
    Pinwheel {
        /// The number of arms (≥ 1).
        arms: usize,
        /// The radial standard deviation.
        radial_std: f64,
        /// The tangential standard deviation.
        tangential_std: f64,
        /// How fast the arms curl.
        rate: f64,
        /// Post-processing.
        affine: Affine,
    },
    /// The swiss roll projected on its first and third coordinates:
    /// `t = 3π/2 (1 + 2U)`, `(t cos t, t sin t) + N(0, noise² I)`. Keys: `noise` and the
    /// [`Affine`] keys.
    SwissRoll {
        /// The Gaussian noise std.
        noise: f64,
        /// Post-processing.
        affine: Affine,
    },
}

const NAMES: &[&str] = &[
    "gaussian",
    "8gaussians",
    "8gaussians-torchdyn",
    "8gaussians-dsb",
    "moons",
    "moons-sklearn",
    "moons-dsb",
    "scurve",
    "scurve-dsb",
    "circles",
    "circles-dsb",
    "checkerboard",
    "checkerboard-dsb",
    "spirals",
    "pinwheel",
    "pinwheel-dsb",
    "swissroll",
    "swissroll-dsb",
    "swissroll-icnn",
];

/// The names of the built-in data sets (base names and named variants), in a stable order.
///
/// ```
/// assert!(fm_data::builtin_names().contains(&"moons-sklearn"));
/// ```
pub fn builtin_names() -> &'static [&'static str] {
    NAMES
}

const AFFINE_KEYS: &[&str] = &["standardize", "scale", "shift_x", "shift_y"];

fn dsb(scale: f64) -> Affine {
    Affine {
        standardize: true,
        scale,
        shift: [0.0, 0.0],
    }
}

impl Toy {
    /// The toy with the given built-in name (see [`builtin_names`]) and its documented defaults.
    pub fn named(name: &str) -> Option<Toy> {
        let eight = |radius, std, scale| Toy::EightGaussians {
            radius,
            std,
            affine: Affine::scaled(scale),
        };
        let moons = |style, noise, affine| Toy::Moons {
            style,
            noise,
            affine,
        };
        let pinwheel = |scale| Toy::Pinwheel {
            arms: 5,
            radial_std: 0.3,
            tangential_std: 0.1,
            rate: 0.25,
            affine: Affine::scaled(scale),
        };
        Some(match name {
            "gaussian" => Toy::Gaussian {
                dim: 2,
                mean: 0.0,
                std: 1.0,
            },
            "8gaussians" => eight(5.0, 0.1f64.sqrt().sqrt(), 1.0),
            "8gaussians-torchdyn" => eight(5.0, 1.0, 1.0),
            "8gaussians-dsb" => eight(4.0, 0.5, 3.0),
            "moons" => moons(
                MoonsStyle::Torchdyn,
                0.2,
                Affine {
                    standardize: false,
                    scale: 3.0,
                    shift: [-1.0, -1.0],
                },
            ),
            "moons-sklearn" => moons(
                MoonsStyle::Sklearn,
                0.05,
                Affine {
                    standardize: false,
                    scale: 2.0,
                    shift: [-1.0, 0.0],
                },
            ),
            "moons-dsb" => moons(MoonsStyle::Sklearn, 0.1, dsb(7.0)),
            "scurve" => Toy::SCurve {
                noise: 0.05,
                affine: Affine::scaled(1.5),
            },
            "scurve-dsb" => Toy::SCurve {
                noise: 0.1,
                affine: dsb(7.0),
            },
            "circles" => Toy::Circles {
                factor: 0.5,
                noise: 0.05,
                affine: Affine::scaled(3.5),
            },
            "circles-dsb" => Toy::Circles {
                factor: 0.5,
                noise: 0.0,
                affine: Affine::scaled(10.0),
            },
            "checkerboard" => Toy::Checkerboard {
                affine: Affine::scaled(2.0),
            },
            "checkerboard-dsb" => Toy::Checkerboard {
                affine: Affine::scaled(7.5),
            },
            "spirals" => Toy::Spirals {
                max_angle: 540.0,
                jitter: 0.5,
                noise: 0.1,
                affine: Affine::default(),
            },
            "pinwheel" => pinwheel(2.0),
            "pinwheel-dsb" => pinwheel(7.5),
            "swissroll" => Toy::SwissRoll {
                noise: 1.0,
                affine: Affine::scaled(0.2),
            },
            "swissroll-dsb" => Toy::SwissRoll {
                noise: 0.1,
                affine: dsb(7.0),
            },
            "swissroll-icnn" => Toy::SwissRoll {
                noise: 0.25,
                affine: Affine::default(),
            },
            _ => return None,
        })
    }

    /// Parses `name` or `name:key=value,key=value` (see the table on [`Toy`]).
    ///
    /// `dim_hint` sets the dimension of `gaussian` (a `dim=` key overrides it); for every toy,
    /// a hint that differs from the final dimension is a [`DataError::DimMismatch`].
    ///
    /// ```
    /// use fm_data::Toy;
    /// let toy = Toy::parse("8gaussians:radius=4,std=0.5", None).unwrap();
    /// assert_eq!(toy.name(), "8gaussians:radius=4,std=0.5");
    /// assert!(Toy::parse("8gaussians:colour=red", None).is_err());
    /// ```
    pub fn parse(spec: &str, dim_hint: Option<usize>) -> Result<Toy, DataError> {
        let spec = spec.trim();
        let (name, params) = match spec.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p)),
            None => (spec, None),
        };
        let mut toy = Toy::named(name).ok_or_else(|| DataError::UnknownDataset {
            name: name.to_string(),
            known: NAMES.join(", "),
        })?;
        if let (Toy::Gaussian { dim, .. }, Some(h)) = (&mut toy, dim_hint) {
            *dim = h;
        }
        if let Some(params) = params {
            let mut seen: Vec<&str> = Vec::new();
            for item in params.split(',') {
                let (key, value) = item.split_once('=').ok_or_else(|| DataError::BadSpec {
                    spec: spec.to_string(),
                    reason: format!("expected key=value, found {:?}", item.trim()),
                })?;
                let (key, value) = (key.trim(), value.trim());
                if seen.contains(&key) {
                    return Err(DataError::BadSpec {
                        spec: spec.to_string(),
                        reason: format!("parameter {key} is given twice"),
                    });
                }
                seen.push(key);
                toy.set(name, key, value)?;
            }
        }
        toy.check()?;
        if let Some(h) = dim_hint
            && h != toy.dim()
        {
            return Err(DataError::DimMismatch {
                what: format!("data set {spec}"),
                expected: h,
                found: toy.dim(),
            });
        }
        Ok(toy)
    }

    /// The dimension of the samples (2 for every toy but `gaussian`).
    pub fn dim(&self) -> usize {
        match self {
            Toy::Gaussian { dim, .. } => *dim,
            _ => 2,
        }
    }

    /// The base name of this kind of toy (`"moons"` for every moons variant, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Toy::Gaussian { .. } => "gaussian",
            Toy::EightGaussians { .. } => "8gaussians",
            Toy::Moons { .. } => "moons",
            Toy::SCurve { .. } => "scurve",
            Toy::Circles { .. } => "circles",
            Toy::Checkerboard { .. } => "checkerboard",
            Toy::Spirals { .. } => "spirals",
            Toy::Pinwheel { .. } => "pinwheel",
            Toy::SwissRoll { .. } => "swissroll",
        }
    }

    /// The spec keys this toy accepts.
    pub fn keys(&self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            Toy::Gaussian { .. } => return vec!["dim", "mean", "std"],
            Toy::EightGaussians { .. } => &["radius", "std"],
            Toy::Moons { .. } => &["style", "noise"],
            Toy::SCurve { .. } | Toy::SwissRoll { .. } => &["noise"],
            Toy::Circles { .. } => &["factor", "noise"],
            Toy::Checkerboard { .. } => &[],
            Toy::Spirals { .. } => &["max_angle", "jitter", "noise"],
            Toy::Pinwheel { .. } => &["arms", "radial_std", "tangential_std", "rate"],
        };
        own.iter().chain(AFFINE_KEYS).copied().collect()
    }

    /// Every parameter as `(key, value)` in the order of [`keys`](Toy::keys), values written so
    /// that [`Toy::parse`] reads them back exactly.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = match self {
            Toy::Gaussian { dim, mean, std } => {
                return vec![
                    ("dim", dim.to_string()),
                    ("mean", mean.to_string()),
                    ("std", std.to_string()),
                ];
            }
            Toy::EightGaussians { radius, std, .. } => {
                vec![("radius", radius.to_string()), ("std", std.to_string())]
            }
            Toy::Moons { style, noise, .. } => vec![
                (
                    "style",
                    match style {
                        MoonsStyle::Torchdyn => "torchdyn",
                        MoonsStyle::Sklearn => "sklearn",
                    }
                    .to_string(),
                ),
                ("noise", noise.to_string()),
            ],
            Toy::SCurve { noise, .. } | Toy::SwissRoll { noise, .. } => {
                vec![("noise", noise.to_string())]
            }
            Toy::Circles { factor, noise, .. } => {
                vec![("factor", factor.to_string()), ("noise", noise.to_string())]
            }
            Toy::Checkerboard { .. } => vec![],
            Toy::Spirals {
                max_angle,
                jitter,
                noise,
                ..
            } => vec![
                ("max_angle", max_angle.to_string()),
                ("jitter", jitter.to_string()),
                ("noise", noise.to_string()),
            ],
            Toy::Pinwheel {
                arms,
                radial_std,
                tangential_std,
                rate,
                ..
            } => vec![
                ("arms", arms.to_string()),
                ("radial_std", radial_std.to_string()),
                ("tangential_std", tangential_std.to_string()),
                ("rate", rate.to_string()),
            ],
        };
        if let Some(a) = self.affine() {
            out.push(("standardize", a.standardize.to_string()));
            out.push(("scale", a.scale.to_string()));
            out.push(("shift_x", a.shift[0].to_string()));
            out.push(("shift_y", a.shift[1].to_string()));
        }
        out
    }

    /// A spec that [`Toy::parse`] turns back into this toy: a built-in name if the parameters
    /// are exactly those of one, else the base name followed by the parameters that differ from
    /// its defaults, e.g. `"moons:noise=0.1"`.
    pub fn name(&self) -> String {
        if let Some(n) = NAMES.iter().find(|n| Toy::named(n).as_ref() == Some(self)) {
            return n.to_string();
        }
        let base = Toy::named(self.kind()).expect("every kind is a built-in name");
        let base_params = base.params();
        let diff: Vec<String> = self
            .params()
            .into_iter()
            .zip(base_params)
            .filter(|(a, b)| a != b)
            .map(|((k, v), _)| format!("{k}={v}"))
            .collect();
        format!("{}:{}", self.kind(), diff.join(","))
    }

    /// The post-processing step, `None` for `gaussian`.
    pub fn affine(&self) -> Option<&Affine> {
        match self {
            Toy::Gaussian { .. } => None,
            Toy::EightGaussians { affine, .. }
            | Toy::Moons { affine, .. }
            | Toy::SCurve { affine, .. }
            | Toy::Circles { affine, .. }
            | Toy::Checkerboard { affine }
            | Toy::Spirals { affine, .. }
            | Toy::Pinwheel { affine, .. }
            | Toy::SwissRoll { affine, .. } => Some(affine),
        }
    }

    fn affine_mut(&mut self) -> Option<&mut Affine> {
        match self {
            Toy::Gaussian { .. } => None,
            Toy::EightGaussians { affine, .. }
            | Toy::Moons { affine, .. }
            | Toy::SCurve { affine, .. }
            | Toy::Circles { affine, .. }
            | Toy::Checkerboard { affine }
            | Toy::Spirals { affine, .. }
            | Toy::Pinwheel { affine, .. }
            | Toy::SwissRoll { affine, .. } => Some(affine),
        }
    }

    fn set(&mut self, dataset: &str, key: &str, value: &str) -> Result<(), DataError> {
        let invalid = |reason: &str| DataError::InvalidValue {
            dataset: dataset.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let num = || -> Result<f64, DataError> {
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                Ok(_) => Err(invalid("must be finite")),
                Err(_) => Err(invalid("not a number")),
            }
        };
        let count = || -> Result<usize, DataError> {
            value
                .parse::<usize>()
                .map_err(|_| invalid("not a non-negative integer"))
        };
        let known = self.keys().join(", ");
        if let Some(a) = self.affine_mut() {
            match key {
                "standardize" => {
                    a.standardize = match value {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(invalid("expected true or false")),
                    };
                    return Ok(());
                }
                "scale" => {
                    a.scale = num()?;
                    return Ok(());
                }
                "shift_x" => {
                    a.shift[0] = num()?;
                    return Ok(());
                }
                "shift_y" => {
                    a.shift[1] = num()?;
                    return Ok(());
                }
                _ => {}
            }
        }
        match (self, key) {
            (Toy::Gaussian { dim, .. }, "dim") => *dim = count()?,
            (Toy::Gaussian { mean, .. }, "mean") => *mean = num()?,
            (Toy::Gaussian { std, .. }, "std")
            | (Toy::EightGaussians { std, .. }, "std")
            | (
                Toy::Pinwheel {
                    radial_std: std, ..
                },
                "radial_std",
            )
            | (
                Toy::Pinwheel {
                    tangential_std: std,
                    ..
                },
                "tangential_std",
            ) => *std = num()?,
            (Toy::EightGaussians { radius, .. }, "radius") => *radius = num()?,
            (Toy::Moons { style, .. }, "style") => {
                *style = match value {
                    "torchdyn" => MoonsStyle::Torchdyn,
                    "sklearn" => MoonsStyle::Sklearn,
                    _ => return Err(invalid("expected torchdyn or sklearn")),
                }
            }
            (Toy::Moons { noise, .. }, "noise")
            | (Toy::SCurve { noise, .. }, "noise")
            | (Toy::Circles { noise, .. }, "noise")
            | (Toy::Spirals { noise, .. }, "noise")
            | (Toy::SwissRoll { noise, .. }, "noise") => *noise = num()?,
            (Toy::Circles { factor, .. }, "factor") => *factor = num()?,
            (Toy::Spirals { max_angle, .. }, "max_angle") => *max_angle = num()?,
            (Toy::Spirals { jitter, .. }, "jitter") => *jitter = num()?,
            (Toy::Pinwheel { arms, .. }, "arms") => *arms = count()?,
            (Toy::Pinwheel { rate, .. }, "rate") => *rate = num()?,
            _ => {
                return Err(DataError::UnknownKey {
                    dataset: dataset.to_string(),
                    key: key.to_string(),
                    known,
                });
            }
        }
        Ok(())
    }

    /// Checks every parameter's range; [`Toy::sample`] calls it first.
    pub fn check(&self) -> Result<(), DataError> {
        let kind = self.kind();
        let bad = |key: &str, value: String, reason: &str| DataError::InvalidValue {
            dataset: kind.to_string(),
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        let nonneg = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(key, v.to_string(), "must be finite and non-negative"))
            }
        };
        let finite = |key: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(bad(key, v.to_string(), "must be finite"))
            }
        };
        if let Some(a) = self.affine() {
            finite("scale", a.scale)?;
            finite("shift_x", a.shift[0])?;
            finite("shift_y", a.shift[1])?;
        }
        match self {
            Toy::Gaussian { dim, mean, std } => {
                if *dim == 0 {
                    return Err(bad("dim", "0".into(), "the dimension must be at least 1"));
                }
                finite("mean", *mean)?;
                nonneg("std", *std)
            }
            Toy::EightGaussians { radius, std, .. } => {
                finite("radius", *radius)?;
                nonneg("std", *std)
            }
            Toy::Moons { noise, .. } | Toy::SCurve { noise, .. } | Toy::SwissRoll { noise, .. } => {
                nonneg("noise", *noise)
            }
            Toy::Circles { factor, noise, .. } => {
                if !(factor.is_finite() && *factor > 0.0 && *factor < 1.0) {
                    return Err(bad("factor", factor.to_string(), "must lie in (0, 1)"));
                }
                nonneg("noise", *noise)
            }
            Toy::Checkerboard { .. } => Ok(()),
            Toy::Spirals {
                max_angle,
                jitter,
                noise,
                ..
            } => {
                if !(max_angle.is_finite() && *max_angle > 0.0) {
                    return Err(bad("max_angle", max_angle.to_string(), "must be positive"));
                }
                nonneg("jitter", *jitter)?;
                nonneg("noise", *noise)
            }
            Toy::Pinwheel {
                arms,
                radial_std,
                tangential_std,
                rate,
                ..
            } => {
                if *arms == 0 {
                    return Err(bad("arms", "0".into(), "at least one arm"));
                }
                nonneg("radial_std", *radial_std)?;
                nonneg("tangential_std", *tangential_std)?;
                finite("rate", *rate)
            }
        }
    }

    /// `n` independent samples, shape `(n, dim)`; `n` must be at least 1.
    ///
    /// ```
    /// use fm_data::Toy;
    /// let x = Toy::named("moons").unwrap().sample(256, &mut fm_core::rng::seeded(0)).unwrap();
    /// assert_eq!(x.dim(), (256, 2));
    /// ```
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>, DataError> {
        self.check()?;
        if n == 0 {
            return Err(DataError::InvalidParameter {
                name: "n",
                value: "0".into(),
                reason: "draw at least one sample",
            });
        }
        let mut rows: Vec<[f64; 2]> = match *self {
            Toy::Gaussian { dim, mean, std } => {
                let x = Array2::from_shape_simple_fn((n, dim), || mean + std * normal(rng));
                return self.finite_samples(x);
            }
            Toy::EightGaussians { radius, std, .. } => (0..n)
                .map(|_| {
                    let k = rng.random_range(0..8u32);
                    let a = f64::from(k) * PI / 4.0;
                    let (z0, z1) = (normal(rng), normal(rng));
                    [radius * a.cos() + std * z0, radius * a.sin() + std * z1]
                })
                .collect(),
            Toy::Moons { style, noise, .. } => {
                let n_out = n / 2;
                let n_in = n - n_out;
                let mut rows: Vec<[f64; 2]> = linspace(0.0, PI, n_out, true)
                    .map(|t| [t.cos(), t.sin()])
                    .chain(linspace(0.0, PI, n_in, true).map(|t| [1.0 - t.cos(), 0.5 - t.sin()]))
                    .collect();
                rows.shuffle(rng);
                for r in rows.iter_mut() {
                    match style {
                        MoonsStyle::Torchdyn => {
                            let u = noise * rng.random::<f64>();
                            r[0] += u;
                            r[1] += u;
                        }
                        MoonsStyle::Sklearn => {
                            r[0] += noise * normal(rng);
                            r[1] += noise * normal(rng);
                        }
                    }
                }
                rows
            }
            Toy::SCurve { noise, .. } => (0..n)
                .map(|_| {
                    let t = 3.0 * PI * (rng.random::<f64>() - 0.5);
                    let z = t.signum() * (t.cos() - 1.0);
                    [t.sin() + noise * normal(rng), z + noise * normal(rng)]
                })
                .collect(),
            Toy::Circles { factor, noise, .. } => {
                let n_out = n / 2;
                let n_in = n - n_out;
                let mut rows: Vec<[f64; 2]> = linspace(0.0, 2.0 * PI, n_out, false)
                    .map(|t| [t.cos(), t.sin()])
                    .chain(
                        linspace(0.0, 2.0 * PI, n_in, false)
                            .map(|t| [factor * t.cos(), factor * t.sin()]),
                    )
                    .collect();
                rows.shuffle(rng);
                for r in rows.iter_mut() {
                    r[0] += noise * normal(rng);
                    r[1] += noise * normal(rng);
                }
                rows
            }
            Toy::Checkerboard { .. } => (0..n)
                .map(|_| {
                    let x1 = 4.0 * rng.random::<f64>() - 2.0;
                    let lower = if rng.random::<bool>() { 2.0 } else { 0.0 };
                    let x2 = rng.random::<f64>() - lower + x1.floor().rem_euclid(2.0);
                    [x1, x2]
                })
                .collect(),
            Toy::Spirals {
                max_angle,
                jitter,
                noise,
                ..
            } => (0..n)
                .map(|i| {
                    let r = rng.random::<f64>().sqrt() * max_angle.to_radians();
                    let j1 = jitter * rng.random::<f64>();
                    let j2 = jitter * rng.random::<f64>();
                    let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                    [
                        s * (-r.cos() * r + j1) / 3.0 + noise * normal(rng),
                        s * (r.sin() * r + j2) / 3.0 + noise * normal(rng),
                    ]
                })
                .collect(),
            Toy::Pinwheel {
                arms,
                radial_std,
                tangential_std,
                rate,
                ..
            } => (0..n)
                .map(|i| {
                    let f0 = 1.0 + radial_std * normal(rng);
                    let f1 = tangential_std * normal(rng);
                    let a = 2.0 * PI * (i % arms) as f64 / arms as f64 + rate * f0.exp();
                    let (s, c) = a.sin_cos();
                    [f0 * c + f1 * s, -f0 * s + f1 * c]
                })
                .collect(),
            Toy::SwissRoll { noise, .. } => (0..n)
                .map(|_| {
                    let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
                    [
                        t * t.cos() + noise * normal(rng),
                        t * t.sin() + noise * normal(rng),
                    ]
                })
                .collect(),
        };
        if matches!(self, Toy::Spirals { .. } | Toy::Pinwheel { .. }) {
            rows.shuffle(rng);
        }
        let mut x = Array2::from_shape_fn((n, 2), |(i, j)| rows[i][j]);
        if let Some(a) = self.affine() {
            a.apply(&mut x);
        }
        self.finite_samples(x)
    }

    /// `x` if every entry is finite: parameters that pass [`Toy::check`] one by one can still
    /// overflow together (`moons:noise=1e308`), and a NaN sample must be an error, not data.
    fn finite_samples(&self, x: Array2<f64>) -> Result<Array2<f64>, DataError> {
        fm_core::shape::check_finite(&format!("samples of {}", self.name()), x.view())?;
        Ok(x)
    }
}

fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}

/// numpy's `linspace(start, stop, k, endpoint)`.
fn linspace(start: f64, stop: f64, k: usize, endpoint: bool) -> impl Iterator<Item = f64> {
    let div = if endpoint {
        k.saturating_sub(1).max(1)
    } else {
        k.max(1)
    } as f64;
    let step = (stop - start) / div;
    (0..k).map(move |i| start + step * i as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_that_overflow_together_are_an_error_not_inf() {
        // Found by tests/robustness.rs: each parameter passes `check`, the samples overflow.
        let mut rng = fm_core::rng::seeded(1);
        for spec in ["moons:noise=1e308", "gaussian:dim=2,mean=1e308,std=1e308"] {
            let toy = Toy::parse(spec, None).unwrap();
            let err = toy.sample(64, &mut rng).unwrap_err();
            assert!(err.to_string().contains("non-finite"), "{spec}: {err}");
        }
        assert!(
            Toy::parse("moons:noise=0.1", None)
                .unwrap()
                .sample(64, &mut rng)
                .is_ok()
        );
    }

    #[test]
    fn linspace_matches_numpy() {
        let v: Vec<f64> = linspace(0.0, 1.0, 5, true).collect();
        assert_eq!(v, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let v: Vec<f64> = linspace(0.0, 1.0, 4, false).collect();
        assert_eq!(v, vec![0.0, 0.25, 0.5, 0.75]);
        let v: Vec<f64> = linspace(0.0, 1.0, 1, true).collect();
        assert_eq!(v, vec![0.0]);
        assert_eq!(linspace(0.0, 1.0, 0, true).count(), 0);
    }

    #[test]
    fn every_name_is_a_toy_and_names_itself() {
        for name in NAMES {
            let toy = Toy::named(name).unwrap();
            toy.check().unwrap();
            assert_eq!(&toy.name(), name);
            assert!(name.starts_with(toy.kind()));
        }
    }

    #[test]
    fn standardisation_gives_zero_mean_unit_std() {
        let mut x = ndarray::array![[1.0, 2.0], [3.0, 10.0]];
        dsb(1.0).apply(&mut x);
        let mean = x.mean().unwrap();
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
    }
}
