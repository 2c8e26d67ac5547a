//! Robustness of the library entry points (issue 10): random shapes (0 rows or columns,
//! mismatched `n` and `d`) and arrays sprinkled with NaN and ±∞ go to the public functions of
//! every crate, called directly in the test so that a panic fails it.
//!
//! The rule checked everywhere: mis-shaped or non-finite input gives a typed `Err`, never an
//! `Ok` holding NaN; valid input gives `Ok` with finite values (or, where the maths allows it,
//! a named error such as a singular density or a solver's step limit).

use flow_matching::{autograd, core, couplings, data, metrics, ode, paths, train};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use std::path::Path;

// ---------------------------------------------------------------- strategies and helpers

/// Cases per property: small, so the file runs in about a second in a debug build.
const CASES: u32 = 48;

/// Mostly moderate finite values, sometimes NaN, +∞ or −∞ (about 7 % of entries).
fn entry() -> impl Strategy<Value = f64> {
    prop_oneof![
        40 => -5.0f64..5.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn mat_of((r, c): (usize, usize)) -> impl Strategy<Value = Array2<f64>> {
    proptest::collection::vec(entry(), r * c)
        .prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
}

/// The shape `(n, d)` most of the time, else any small shape (0 rows or columns included).
fn shape_near(n: usize, d: usize) -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![3 => Just((n, d)), 1 => (0usize..4, 0usize..4)]
}

fn len_near(n: usize) -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(n), 1 => 0usize..5]
}

/// Times in [0, 1] most of the time, sometimes NaN, ∞ or outside the unit interval.
fn times(len: usize) -> impl Strategy<Value = Array1<f64>> {
    proptest::collection::vec(
        prop_oneof![
            10 => 0.0f64..=1.0,
            1 => Just(0.0),
            1 => Just(1.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(1.5),
            1 => Just(-0.25),
        ],
        len,
    )
    .prop_map(Array1::from)
}

/// A scalar parameter: mostly sensible, sometimes zero, negative, NaN or infinite.
fn param(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => lo..hi,
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn finite2(a: &Array2<f64>) -> bool {
    a.iter().all(|x| x.is_finite())
}

fn finite1(a: &Array1<f64>) -> bool {
    a.iter().all(|x| x.is_finite())
}

fn usable(a: &Array2<f64>) -> bool {
    a.nrows() > 0 && a.ncols() > 0 && finite2(a)
}

/// Everything valid about a path batch except the finiteness of `x_0`.
fn usable_shape_ok(x_0: &Array2<f64>, x_1: &Array2<f64>, t: &Array1<f64>) -> bool {
    x_0.nrows() > 0
        && x_0.ncols() > 0
        && x_1.dim() == x_0.dim()
        && finite2(x_1)
        && t.len() == x_0.nrows()
        && in_unit(t)
}

fn in_unit(t: &Array1<f64>) -> bool {
    t.iter().all(|t| (0.0..=1.0).contains(t))
}

fn rng(seed: u64) -> core::rng::FmRng {
    core::rng::seeded(seed)
}

/// The linear field `v(t, x) = −x / 2` of dimension `d`.
fn shrink(
    d: usize,
) -> core::FnField<impl Fn(f64, ndarray::ArrayView2<f64>, ndarray::ArrayViewMut2<f64>) + Sync> {
    core::FnField::new(d, |_t, x, mut out| out.assign(&(&x * -0.5)))
}

// ---------------------------------------------------------------- fm-paths

fn all_paths() -> Vec<(&'static str, Box<dyn paths::GaussianPath>)> {
    use paths::*;
    vec![
        ("linear(0.1)", Box::new(LinearPath::new(0.1).unwrap())),
        ("linear(0)", Box::new(LinearPath::new(0.0).unwrap())),
        ("lipman(1e-4)", Box::new(LipmanPath::new(1e-4).unwrap())),
        (
            "sb(0.5)",
            Box::new(SchrodingerBridgePath::new(0.5).unwrap()),
        ),
        ("trig(0.1)", Box::new(TrigonometricPath::new(0.1).unwrap())),
        (
            "affine(condot)",
            Box::new(AffineProbPath::new(CondOtScheduler)),
        ),
        (
            "affine(cosine)",
            Box::new(AffineProbPath::new(CosineScheduler)),
        ),
        (
            "affine(vp)",
            Box::new(AffineProbPath::new(VpScheduler::default())),
        ),
        (
            "ve(0.01, 10)",
            Box::new(VarianceExplodingPath::new(0.01, 10.0).unwrap()),
        ),
    ]
}

/// `x_0`, `x_1`, `t` and a fourth array used as `eps` or `x_t`.
type PathCase = (Array2<f64>, Array2<f64>, Array1<f64>, Array2<f64>);

fn path_case() -> impl Strategy<Value = PathCase> {
    (0usize..4, 0usize..4).prop_flat_map(|(n, d)| {
        (
            mat_of((n, d)),
            shape_near(n, d).prop_flat_map(mat_of),
            len_near(n).prop_flat_map(times),
            shape_near(n, d).prop_flat_map(mat_of),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn paths_reject_bad_batches_and_never_return_nan((x_0, x_1, t, other) in path_case(), seed in any::<u64>()) {
        let base = usable(&x_0)
            && x_1.dim() == x_0.dim()
            && finite2(&x_1)
            && t.len() == x_0.nrows()
            && in_unit(&t);
        let with_other = base && other.dim() == x_0.dim() && finite2(&other);
        for (name, p) in all_paths() {
            // Lipman's and the VE path never read x_0 (their source is their own N(0, σ²I) at
            // t = 0; the affine path reads x_0 as its noise): a NaN there is harmless.
            let reads_x_0 = !(name.starts_with("lipman") || name.starts_with("ve"));
            // The densities and scores of paths conditioned on x_1 alone (Lipman, VE, affine)
            // do not read x_0 either.
            let density_reads_x_0 = p.conditioning() != paths::Conditioning::Target;
            let x_0_free = !finite2(&x_0) && usable_shape_ok(&x_0, &x_1, &t)
                && other.dim() == x_0.dim() && finite2(&other);
            let density_ok = with_other || (!density_reads_x_0 && x_0_free);
            // Where a coefficient of x_0 vanishes (t = 1 for the linear path) a NaN x_0 does
            // not reach the result: a finite `Ok` is then as good as an error.
            let density_may = density_ok || x_0_free;
            let base = base || (!reads_x_0 && !finite2(&x_0) && usable_shape_ok(&x_0, &x_1, &t));
            let with_other = with_other || (!reads_x_0 && x_0_free);
            let (v0, v1, vt, vo) = (x_0.view(), x_1.view(), t.view(), other.view());
            match p.sample_with_noise(v0, v1, vt, vo) {
                Ok(s) => {
                    prop_assert!(with_other, "{name}: sample_with_noise accepted a bad batch");
                    prop_assert!(finite2(&s.x_t) && finite2(&s.u_t), "{name}: sample_with_noise gave non-finite values");
                }
                // A scheduler singular at an end point (σ_t = 0 with dσ_t/dt infinite) is a named error.
                Err(paths::PathError::Singular { .. }) => {}
                Err(e) => prop_assert!(!with_other, "{name}: sample_with_noise refused a valid batch: {e}"),
            }
            match p.sample(v0, v1, vt, &mut rng(seed)) {
                Ok(s) => {
                    prop_assert!(base, "{name}: sample accepted a bad batch");
                    prop_assert!(finite2(&s.x_t) && finite2(&s.u_t) && finite2(&s.eps), "{name}: sample gave non-finite values");
                }
                // A scheduler singular at an end point (σ_t = 0 with dσ_t/dt infinite) is a named error.
                Err(paths::PathError::Singular { .. }) => {}
                Err(e) => prop_assert!(!base, "{name}: sample refused a valid batch: {e}"),
            }
            match p.conditional_velocity(vo, v0, v1, vt) {
                Ok(u) => {
                    prop_assert!(with_other, "{name}: conditional_velocity accepted a bad batch");
                    prop_assert!(finite2(&u), "{name}: conditional_velocity is non-finite: {u:?} at t = {t:?}");
                }
                // A scheduler singular at an end point (σ_t = 0 with dσ_t/dt infinite) is a named error.
                Err(paths::PathError::Singular { .. }) => {}
                Err(e) => prop_assert!(!with_other, "{name}: conditional_velocity refused a valid batch: {e}"),
            }
            match p.log_density(vo, v0, v1, vt) {
                Ok(l) => {
                    prop_assert!(density_may, "{name}: log_density accepted a bad batch");
                    prop_assert!(finite1(&l), "{name}: log_density is non-finite: {l:?}");
                }
                Err(paths::PathError::Singular { .. }) => {}
                Err(e) => prop_assert!(!density_ok, "{name}: log_density refused a valid batch: {e}"),
            }
            match p.score(vo, v0, v1, vt) {
                Ok(s) => {
                    prop_assert!(density_may, "{name}: score accepted a bad batch");
                    prop_assert!(finite2(&s), "{name}: score is non-finite");
                }
                Err(paths::PathError::Singular { .. }) => {}
                Err(e) => prop_assert!(!density_ok, "{name}: score refused a valid batch: {e}"),
            }
        }
    }

    #[test]
    fn path_constructors_refuse_bad_parameters(s in param(0.0, 2.0), s2 in param(0.0, 20.0)) {
        use paths::*;
        let ok = s.is_finite() && s >= 0.0;
        // Each constructor either refuses the value or builds a path that samples finitely.
        type Built = Result<Box<dyn GaussianPath>, PathError>;
        let built: Vec<(&str, Built)> = vec![
            ("linear", LinearPath::new(s).map(|p| Box::new(p) as Box<dyn GaussianPath>)),
            ("trig", TrigonometricPath::new(s).map(|p| Box::new(p) as Box<dyn GaussianPath>)),
            ("sb", SchrodingerBridgePath::new(s).map(|p| Box::new(p) as Box<dyn GaussianPath>)),
            ("lipman", LipmanPath::new(s).map(|p| Box::new(p) as Box<dyn GaussianPath>)),
            ("ve", VarianceExplodingPath::new(s, s2).map(|p| Box::new(p) as Box<dyn GaussianPath>)),
            ("vp", VpScheduler::new(s, s2).map(|v| Box::new(AffineProbPath::new(v)) as Box<dyn GaussianPath>)),
            ("poly", PolynomialScheduler::new(s).map(|v| Box::new(AffineProbPath::new(v)) as Box<dyn GaussianPath>)),
        ];
        let x = ndarray::array![[0.5, -1.0], [2.0, 0.0]];
        let t = ndarray::array![0.0, 0.7];
        for (name, p) in built {
            let two = name == "ve" || name == "vp";
            match p {
                Ok(p) => {
                    prop_assert!(s.is_finite() && s >= 0.0 && (!two || s2.is_finite()),
                        "{name}: accepted parameters ({s}, {s2})");
                    if let Ok(out) = p.sample(x.view(), x.view(), t.view(), &mut rng(0)) {
                        prop_assert!(finite2(&out.x_t) && finite2(&out.u_t), "{name}({s}, {s2}): non-finite sample");
                    }
                }
                Err(e) => {
                    if name == "linear" || name == "trig" {
                        prop_assert!(!ok, "{name}: refused sigma = {s}: {e}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- fm-couplings

fn coupling_case() -> impl Strategy<Value = (Array2<f64>, Array2<f64>)> {
    (0usize..5, 0usize..4).prop_flat_map(|(n, d)| {
        (
            mat_of((n, d)),
            prop_oneof![2 => Just(n), 1 => 0usize..6]
                .prop_flat_map(move |m| shape_near(m, d))
                .prop_flat_map(mat_of),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn cost_and_assignment_reject_bad_input((x_0, x_1) in coupling_case()) {
        let valid = usable(&x_0) && usable(&x_1) && x_0.ncols() == x_1.ncols();
        match couplings::sq_euclidean_cost(x_0.view(), x_1.view()) {
            Ok(c) => {
                prop_assert!(valid, "sq_euclidean_cost accepted {:?} vs {:?}", x_0, x_1);
                prop_assert_eq!(c.dim(), (x_0.nrows(), x_1.nrows()));
                prop_assert!(finite2(&c));
            }
            Err(e) => prop_assert!(!valid, "sq_euclidean_cost refused a valid pair: {e}"),
        }
        // The first matrix as a cost matrix: rows → columns, n ≤ m.
        let cost = &x_0;
        let valid = usable(cost) && cost.nrows() <= cost.ncols();
        match couplings::assignment(cost.view()) {
            Ok(p) => {
                prop_assert!(valid, "assignment accepted {cost:?}");
                prop_assert_eq!(p.len(), cost.nrows());
                let mut seen = vec![false; cost.ncols()];
                for &j in &p {
                    prop_assert!(j < cost.ncols() && !seen[j]);
                    seen[j] = true;
                }
            }
            Err(e) => prop_assert!(!valid, "assignment refused a valid cost {cost:?}: {e}"),
        }
    }

    #[test]
    fn couplings_reject_bad_batches((x_0, x_1) in coupling_case(), eps in param(0.01, 2.0), seed in any::<u64>()) {
        use couplings::Coupling;
        let bad = !usable(&x_0) || !usable(&x_1) || x_0.ncols() != x_1.ncols();
        let mut all: Vec<(&str, Box<dyn Coupling>)> = vec![
            ("exact", Box::new(couplings::ExactOtCoupling::default())),
            ("independent", Box::new(couplings::IndependentCoupling::random())),
        ];
        match couplings::SinkhornCoupling::new(eps) {
            Ok(c) => {
                prop_assert!(eps.is_finite() && eps > 0.0, "SinkhornCoupling::new accepted {eps}");
                all.push(("sinkhorn", Box::new(c)));
            }
            Err(_) => prop_assert!(!(eps.is_finite() && eps > 0.0), "SinkhornCoupling::new refused {eps}"),
        }
        for (name, c) in all {
            // Refusals of valid batches are the couplings' own tests' business (n ≠ m rules).
            if let Ok(p) = c.pair(x_0.view(), x_1.view(), &mut rng(seed)) {
                prop_assert!(!bad, "{name}: pair accepted {x_0:?} / {x_1:?}");
                prop_assert_eq!(p.i0.len(), p.i1.len());
                prop_assert!(p.i0.iter().all(|&i| i < x_0.nrows()));
                prop_assert!(p.i1.iter().all(|&j| j < x_1.nrows()));
            }
        }
    }

    #[test]
    fn sinkhorn_rejects_bad_costs_and_epsilons((cost, _) in coupling_case(), eps in param(0.01, 2.0)) {
        let valid = usable(&cost) && eps.is_finite() && eps > 0.0;
        match couplings::sinkhorn_uniform(cost.view(), &couplings::SinkhornParams::with_epsilon(eps)) {
            Ok(plan) => {
                prop_assert!(valid, "sinkhorn accepted cost {cost:?}, epsilon {eps}");
                prop_assert!(finite2(&plan.plan), "sinkhorn plan is non-finite");
            }
            Err(e) => prop_assert!(!valid, "sinkhorn refused a valid cost, epsilon {eps}: {e}"),
        }
    }
}

// ---------------------------------------------------------------- fm-autograd

fn mlp(dim: usize) -> autograd::Mlp {
    let cfg = autograd::MlpConfig {
        dim,
        hidden: vec![5],
        ..Default::default()
    };
    autograd::Mlp::new(&cfg, &mut rng(dim as u64)).unwrap()
}

type MlpCase = (usize, Array1<f64>, Array2<f64>, Array2<f64>);

fn mlp_case() -> impl Strategy<Value = MlpCase> {
    (1usize..4, 0usize..4).prop_flat_map(|(dim, n)| {
        (
            Just(dim),
            len_near(n).prop_flat_map(times),
            shape_near(n, dim).prop_flat_map(mat_of),
            shape_near(n, dim).prop_flat_map(mat_of),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn mlp_entry_points_reject_bad_batches((dim, t, x, target) in mlp_case(), seed in any::<u64>()) {
        let net = mlp(dim);
        // Any finite time is a valid network input (the network does not know about [0, 1]).
        let t_ok = t.iter().all(|t| t.is_finite());
        let n = x.nrows();
        let valid = x.ncols() == dim && t.len() == n && finite2(&x) && t_ok;
        match net.forward(t.view(), x.view()) {
            Ok(v) => {
                prop_assert!(valid, "forward accepted t {t:?}, x {x:?}");
                prop_assert_eq!(v.dim(), (n, dim));
                prop_assert!(finite2(&v));
            }
            Err(e) => prop_assert!(!valid, "forward refused a valid batch: {e}"),
        }
        match net.divergence(t.view(), x.view()) {
            Ok(div) => {
                prop_assert!(valid, "divergence accepted a bad batch");
                prop_assert_eq!(div.len(), n);
                prop_assert!(finite1(&div));
            }
            Err(e) => prop_assert!(!valid, "divergence refused a valid batch: {e}"),
        }
        match net.divergence_hutchinson(t.view(), x.view(), 2, autograd::Probe::Rademacher, &mut rng(seed)) {
            Ok(div) => {
                prop_assert!(valid, "divergence_hutchinson accepted a bad batch");
                prop_assert!(finite1(&div));
            }
            Err(e) => prop_assert!(!valid, "divergence_hutchinson refused a valid batch: {e}"),
        }
        // A loss needs at least one sample: the mean over no entries is NaN.
        let valid_loss = valid && n > 0 && target.dim() == x.dim() && finite2(&target);
        match net.loss_and_grad(t.view(), x.view(), target.view()) {
            Ok((loss, _)) => {
                prop_assert!(valid_loss, "loss_and_grad accepted t {t:?}, x {x:?}, target {target:?} (loss {loss})");
                prop_assert!(loss.is_finite() && loss >= 0.0);
            }
            Err(e) => prop_assert!(!valid_loss, "loss_and_grad refused a valid batch: {e}"),
        }
    }

    #[test]
    fn from_tensors_rejects_damaged_weights(
        dim in 0usize..4,
        which in 0usize..4,
        how in 0usize..5,
        value in entry(),
    ) {
        let cfg = autograd::MlpConfig { dim: dim.max(1), hidden: vec![3], ..Default::default() };
        let good = autograd::Mlp::new(&cfg, &mut rng(1)).unwrap().to_tensors();
        let mut tensors = good.clone();
        let k = which % tensors.len();
        let cfg_used = autograd::MlpConfig { dim, ..cfg.clone() };
        let mut damaged = dim == 0;
        match how {
            0 => {
                tensors[k].2[0] = value as f32;
                damaged |= !(value as f32).is_finite();
            }
            1 => {
                tensors[k].1.push(1);
            }
            2 => {
                tensors.remove(k);
                damaged = true;
            }
            3 => {
                tensors[k].0.push('x');
                damaged = true;
            }
            _ => {
                tensors[k].2.pop();
                damaged = true;
            }
        }
        // Appending a unit axis keeps the size but not the shape: a mismatch all the same.
        damaged |= how == 1;
        damaged |= dim != cfg.dim;
        match autograd::Mlp::from_tensors(&cfg_used, &tensors) {
            Ok(net) => {
                prop_assert!(!damaged, "from_tensors accepted damage {how} to tensor {k} (value {value}, dim {dim})");
                let v = net.forward(ndarray::array![0.5].view(), Array2::zeros((1, dim)).view()).unwrap();
                prop_assert!(finite2(&v));
            }
            Err(e) => prop_assert!(damaged, "from_tensors refused intact weights: {e}"),
        }
    }
}

// ---------------------------------------------------------------- fm-ode

const SOLVERS: [&str; 5] = ["euler", "midpoint", "heun", "rk4", "dopri5"];

#[derive(Debug, Clone)]
enum Mode {
    Steps(usize),
    Tolerances(f64, f64),
    Default,
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        (0usize..6).prop_map(Mode::Steps),
        (param(1e-6, 1e-2), param(1e-6, 1e-2)).prop_map(|(r, a)| Mode::Tolerances(r, a)),
        Just(Mode::Default),
    ]
}

fn time_point() -> impl Strategy<Value = f64> {
    prop_oneof![8 => -3.0f64..3.0, 1 => Just(f64::NAN), 1 => Just(f64::INFINITY), 1 => Just(0.0)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn integrator_rejects_bad_input(
        solver in 0usize..SOLVERS.len(),
        field_dim in 1usize..4,
        x_0 in (0usize..4, 0usize..4).prop_flat_map(mat_of),
        t0 in time_point(),
        t1 in time_point(),
        mode in mode(),
    ) {
        let name = SOLVERS[solver];
        let adaptive = name == "dopri5";
        let mut integ = ode::Integrator::new(ode::solver_by_name(name).unwrap()).span(t0, t1);
        let mode_ok = match mode {
            Mode::Steps(k) => {
                integ = integ.steps(k);
                k > 0
            }
            Mode::Tolerances(r, a) => {
                integ = integ.tolerances(r, a);
                adaptive && r.is_finite() && r > 0.0 && a.is_finite() && a >= 0.0
            }
            Mode::Default => adaptive,
        };
        let valid = usable(&x_0)
            && x_0.ncols() == field_dim
            && t0.is_finite()
            && t1.is_finite()
            && t0 != t1
            && mode_ok;
        let field = shrink(field_dim);
        match integ.run(&field, x_0.view()) {
            Ok(sol) => {
                prop_assert!(valid, "{name} accepted x_0 {x_0:?}, span ({t0}, {t1}), {mode:?}");
                prop_assert!(finite2(&sol.x));
                prop_assert_eq!(sol.t, t1);
            }
            Err(ode::OdeError::MaxStepsExceeded { .. } | ode::OdeError::StepSizeUnderflow { .. }) => {}
            Err(e) => prop_assert!(!valid, "{name} refused a valid problem (span ({t0}, {t1}), {mode:?}): {e}"),
        }
    }

    #[test]
    fn integrator_stops_on_a_field_that_turns_nan(solver in 0usize..SOLVERS.len(), t_bad in 0.0f64..0.9, which in 0usize..3) {
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][which];
        let field = core::FnField::new(2, move |t, x, mut out| {
            out.assign(&x);
            if t >= t_bad {
                out[[0, 1]] = bad;
            }
        });
        let x_0 = ndarray::array![[1.0, 2.0], [0.5, -1.0]];
        let r = ode::Integrator::new(ode::solver_by_name(SOLVERS[solver]).unwrap())
            .span(0.0, 1.0)
            .steps(10)
            .run(&field, x_0.view());
        prop_assert!(r.is_err(), "{}: Ok from a field that returns {bad} from t = {t_bad}", SOLVERS[solver]);
    }
}

// ---------------------------------------------------------------- fm-data

fn spec() -> impl Strategy<Value = String> {
    let names: Vec<String> = data::builtin_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    prop_oneof![
        "\\PC{0,24}",
        (
            proptest::sample::select(names),
            proptest::sample::select(vec![
                "noise", "dim", "radius", "std", "n", "scale", "k", "x"
            ]),
            proptest::sample::select(vec![
                "0",
                "-1",
                "3",
                "0.5",
                "nan",
                "inf",
                "1e308",
                "abc",
                "",
                "99999999999"
            ]),
        )
            .prop_map(|(n, k, v)| format!("{n}:{k}={v}")),
        proptest::sample::select(vec![
            "gaussian",
            "moons",
            ":",
            "gaussian:dim=0",
            "gaussian:dim=-3",
            "x.csv",
            "nope.npy",
            ".csv",
            "/",
            "moons:",
            "moons:noise",
            "moons:noise=0.1,noise=0.2",
            "8gaussians:radius=1e400",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn dataset_parse_never_panics_and_samples_finitely(spec in spec(), hint in prop_oneof![Just(None), (0usize..5).prop_map(Some), Just(Some(usize::MAX))], seed in any::<u64>()) {
        if let Ok(ds) = data::Dataset::parse(&spec, hint) {
            let dim = ds.dim();
            prop_assert!(dim > 0, "{spec:?} parsed to dimension 0");
            let _ = ds.name();
            if dim <= 64 {
                if let Ok(x) = ds.sample(5, &mut rng(seed)) {
                    prop_assert_eq!(x.dim(), (5, dim));
                    prop_assert!(finite2(&x), "{spec:?} sampled non-finite points: {x:?}");
                }
                prop_assert!(ds.sample(0, &mut rng(seed)).map_or(true, |x| x.nrows() == 0));
            }
        }
    }

    #[test]
    fn read_points_on_random_bytes_is_an_error_or_finite_data(
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
        text in "[0-9a-z,.\\-\\n ]{0,40}",
        npy in any::<bool>(),
        as_text in any::<bool>(),
        case in any::<u64>(),
    ) {
        let dir = std::env::temp_dir().join(format!("fm-robustness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{case}.{}", if npy { "npy" } else { "csv" }));
        let mut content = if as_text { text.into_bytes() } else { bytes };
        if npy && as_text {
            // A plausible header with a random body.
            let mut v = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }".to_vec();
            v.resize(128, b' ');
            v[127] = b'\n';
            v.extend_from_slice(&content);
            content = v;
        }
        std::fs::write(&path, &content).unwrap();
        let r = data::read_points(&path);
        std::fs::remove_file(&path).unwrap();
        if let Ok(x) = r {
            prop_assert!(usable(&x), "{}: read {x:?}", path.display());
        }
    }
}

// ---------------------------------------------------------------- fm-metrics

fn pair_case() -> impl Strategy<Value = (Array2<f64>, Array2<f64>)> {
    (0usize..5, 0usize..4)
        .prop_flat_map(|(n, d)| (mat_of((n, d)), shape_near(n, d).prop_flat_map(mat_of)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn distances_reject_bad_samples((a, b) in pair_case(), bw in proptest::collection::vec(param(0.1, 3.0), 0..3)) {
        let same = usable(&a) && usable(&b) && a.ncols() == b.ncols();
        let valid_w = same && a.nrows() == b.nrows();
        for (name, r) in [("w2", metrics::w2(a.view(), b.view())), ("w1", metrics::w1(a.view(), b.view()))] {
            match r {
                Ok(w) => {
                    prop_assert!(valid_w, "{name} accepted {a:?} vs {b:?}");
                    prop_assert!(w.is_finite() && w >= 0.0, "{name} = {w}");
                }
                Err(e) => prop_assert!(!valid_w, "{name} refused valid samples: {e}"),
            }
        }
        // The unbiased estimate needs two points on each side.
        let valid_mmd = same && a.nrows() >= 2 && b.nrows() >= 2 && !bw.is_empty() && bw.iter().all(|h| h.is_finite() && *h > 0.0);
        match metrics::mmd_rbf(a.view(), b.view(), &bw) {
            Ok(m) => {
                prop_assert!(valid_mmd, "mmd_rbf accepted {a:?} vs {b:?}, bandwidths {bw:?}");
                prop_assert!(m.is_finite(), "mmd = {m}");
            }
            Err(e) => prop_assert!(!valid_mmd, "mmd_rbf refused valid samples (bandwidths {bw:?}): {e}"),
        }
    }

    #[test]
    fn likelihood_and_path_energy_reject_bad_input(
        field_dim in 1usize..3,
        x in (0usize..4, 0usize..3).prop_flat_map(mat_of),
        solver in 0usize..SOLVERS.len(),
        steps in prop_oneof![Just(None), (0usize..4).prop_map(Some)],
        rtol in param(1e-5, 1e-2),
        atol in param(1e-5, 1e-2),
        hutchinson in any::<bool>(),
        probes in 0usize..3,
        seed in any::<u64>(),
    ) {
        let field = shrink(field_dim);
        let data_ok = usable(&x) && x.ncols() == field_dim;
        let opts = metrics::LikelihoodOptions {
            solver: SOLVERS[solver].into(),
            steps,
            rtol,
            atol,
            divergence: if hutchinson {
                metrics::Divergence::Hutchinson { probes, kind: metrics::ProbeKind::Rademacher }
            } else {
                metrics::Divergence::Exact
            },
        };
        if let Ok(ll) = metrics::log_likelihood(&field, x.view(), &opts, &mut rng(seed)) {
            prop_assert!(data_ok, "log_likelihood accepted {x:?} for a field of dimension {field_dim}");
            prop_assert!(steps != Some(0), "log_likelihood accepted 0 steps");
            prop_assert!(!hutchinson || probes > 0, "log_likelihood accepted 0 probes");
            if steps.is_none() {
                prop_assert!(SOLVERS[solver] == "dopri5", "{} ran adaptively", SOLVERS[solver]);
                prop_assert!(rtol.is_finite() && rtol > 0.0 && atol.is_finite() && atol >= 0.0,
                    "log_likelihood accepted rtol {rtol}, atol {atol}");
            }
            prop_assert_eq!(ll.log_p.len(), x.nrows());
            prop_assert!(finite1(&ll.log_p), "log-likelihoods {:?}", ll.log_p);
        }
        let steps = steps.unwrap_or(3);
        match metrics::path_energy(&field, x.view(), steps) {
            Ok(pe) => {
                prop_assert!(data_ok && steps > 0, "path_energy accepted {x:?} with {steps} steps");
                prop_assert!(pe.is_finite() && pe >= 0.0);
            }
            Err(e) => prop_assert!(!(data_ok && steps > 0), "path_energy refused valid input: {e}"),
        }
    }
}

// ---------------------------------------------------------------- fm-train

/// The bytes of a real model file and of a real checkpoint from a 3-step run.
fn real_files() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fm-robustness-train-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ckpt = dir.join("m.ckpt");
        let params = train::TrainParams::default()
            .steps(3)
            .batch(8)
            .checkpoint_every(Some(1))
            .check()
            .unwrap();
        let arch = train::ArchConfig {
            hidden: vec![4],
            ..Default::default()
        };
        let out = train::Trainer::new(
            data::Dataset::parse("gaussian", Some(2)).unwrap(),
            data::Dataset::parse("moons", None).unwrap(),
            train::MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap(),
            train::Objective::Flow,
            arch,
            params,
        )
        .unwrap()
        .checkpoint_path(ckpt.clone())
        .run(&mut |_| {})
        .unwrap();
        let model = out.model.to_file().to_bytes().unwrap();
        let checkpoint = std::fs::read(&ckpt).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (model, checkpoint)
    })
}

/// `bytes` truncated to `cut` (if shorter) with `edits` bytes overwritten.
fn damage(bytes: &[u8], cut: Option<usize>, edits: &[(usize, u8)]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(i, v) in edits {
        if !b.is_empty() {
            let i = i % b.len();
            b[i] = v;
        }
    }
    if let Some(c) = cut {
        b.truncate(c % (bytes.len() + 1));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn model_and_checkpoint_loaders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let p = Path::new("random.safetensors");
        prop_assert!(train::ModelFile::from_bytes(p, &bytes).is_err());
        prop_assert!(train::Checkpoint::from_bytes(p, &bytes).is_err());
    }

    #[test]
    fn damaged_real_files_load_as_errors_or_usable_models(
        cut in prop_oneof![Just(None), any::<usize>().prop_map(Some)],
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let (model, checkpoint) = real_files();
        let p = Path::new("damaged.safetensors");
        // Sanity: the intact files load.
        prop_assert!(train::ModelFile::from_bytes(p, model).is_ok());
        prop_assert!(train::Checkpoint::from_bytes(p, checkpoint).is_ok());
        let m = damage(model, cut, &edits);
        if let Ok(file) = train::ModelFile::from_bytes(p, &m) {
            if let Ok(trained) = train::TrainedModel::from_file(p, &file) {
                let field = trained.field(true);
                prop_assert!(field.is_ok());
            }
        }
        let c = damage(checkpoint, cut, &edits);
        if let Ok(ck) = train::Checkpoint::from_bytes(p, &c) {
            prop_assert!(ck.params().iter().all(|x| x.is_finite()), "a checkpoint with non-finite parameters loaded");
        }
    }
}
