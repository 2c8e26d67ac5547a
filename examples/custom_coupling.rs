//! A user-defined coupling next to the built-in ones.
//!
//! `ProjectionCoupling` pairs two minibatches by sorting them along a random direction (one
//! slice of sliced optimal transport): cheap, a true permutation, and better than independent
//! pairing, but not optimal. The example compares the mean squared pairing distance of
//! independent, projected, exact-OT and Sinkhorn couplings on N(0, I) against N((2, 0), I).
//!
//! `cargo run --example custom_coupling --release`
use anyhow::Result;
use flow_matching::core::{StandardNormal, rng::seeded};
use flow_matching::couplings::{
    AssignmentSolver, Coupling, CouplingError, ExactOtCoupling, IndependentCoupling, Pairing,
    SinkhornCoupling,
};
use ndarray::{Array1, Array2, ArrayView2};
use rand::RngCore;

/// Sorts both batches along a random unit direction and pairs them rank by rank.
struct ProjectionCoupling;

impl Coupling for ProjectionCoupling {
    fn pair(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        if x_0.nrows() != x_1.nrows() || x_0.ncols() != x_1.ncols() || x_0.nrows() == 0 {
            return Err(CouplingError::ShapeMismatch {
                what: "x_1".into(),
                expected: format!("{:?}", x_0.dim()),
                found: format!("{:?}", x_1.dim()),
            });
        }
        // A uniformly random direction: a normalised Gaussian vector.
        let normal = StandardNormal::new(x_0.ncols())?;
        let mut dir: Array1<f64> = normal.sample(1, rng).row(0).to_owned();
        dir /= dir.dot(&dir).sqrt().max(f64::MIN_POSITIVE);
        let order = |x: ArrayView2<f64>| {
            let proj = x.dot(&dir);
            let mut idx: Vec<usize> = (0..x.nrows()).collect();
            idx.sort_by(|&a, &b| proj[a].total_cmp(&proj[b]));
            idx
        };
        Ok(Pairing {
            i0: order(x_0),
            i1: order(x_1),
        })
    }
}

fn mean_sq_distance(x_0: &Array2<f64>, x_1: &Array2<f64>, p: &Pairing) -> Result<f64> {
    let (a, b) = p.gather(x_0.view(), x_1.view())?;
    Ok((&a - &b).mapv(|v| v * v).sum() / p.len() as f64)
}

fn main() -> Result<()> {
    let mut rng = seeded(0);
    let n = 256;
    let normal = StandardNormal::new(2)?;
    let x_0 = normal.sample(n, &mut rng);
    let mut x_1 = normal.sample(n, &mut rng);
    x_1.column_mut(0).mapv_inplace(|v| v + 2.0);

    let couplings: Vec<(&str, Box<dyn Coupling>)> = vec![
        ("independent", Box::new(IndependentCoupling::random())),
        ("projection (user)", Box::new(ProjectionCoupling)),
        ("sinkhorn eps=0.5", Box::new(SinkhornCoupling::new(0.5)?)),
        ("exact OT (jv)", Box::new(ExactOtCoupling::default())),
        (
            "exact OT (hungarian)",
            Box::new(ExactOtCoupling::with_solver(AssignmentSolver::from_name(
                "hungarian",
            )?)),
        ),
    ];
    println!("mean squared pairing distance, n = {n}, N(0, I) -> N((2, 0), I):");
    let mut exact = f64::NAN;
    for (name, coupling) in &couplings {
        let started = std::time::Instant::now();
        let pairs = coupling.pair(x_0.view(), x_1.view(), &mut rng)?;
        let elapsed = started.elapsed();
        let cost = mean_sq_distance(&x_0, &x_1, &pairs)?;
        if name.starts_with("exact OT (jv)") {
            exact = cost;
        }
        println!("  {name:<22} {cost:8.4}   ({elapsed:.2?})");
    }
    // The exact coupling is optimal: no permutation does better, the user's coupling included.
    let projected = ProjectionCoupling.pair(x_0.view(), x_1.view(), &mut rng)?;
    anyhow::ensure!(exact <= mean_sq_distance(&x_0, &x_1, &projected)? + 1e-12);
    Ok(())
}
