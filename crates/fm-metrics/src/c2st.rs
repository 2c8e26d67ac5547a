//! The classifier two-sample test (C2ST) as sbibm computes it (Lopez-Paz & Oquab, 2017;
//! Lueckmann et al., 2021).

use crate::MetricsError;
use fm_autograd::{Activation, Adam, AdamConfig, Graph};
use fm_core::shape::{check_batch, check_finite};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use rand::seq::SliceRandom;

/// The settings of [`c2st`]. `Default` follows sbibm's `c2st` (scikit-learn's
/// `MLPClassifier(activation="relu", hidden_layer_sizes=(10·d, 10·d), solver="adam",
/// max_iter=10000)` with its defaults, 5-fold shuffled cross-validation, z-scoring by the
/// first sample).
#[derive(Debug, Clone, PartialEq)]
pub struct C2stOptions {
    /// Cross-validation folds (5).
    pub folds: usize,
    /// Hidden layer widths; `None`: two layers of `10 · d` (sbibm).
    pub hidden: Option<Vec<usize>>,
    /// The most passes over the training folds (10 000, sbibm's `max_iter`).
    pub max_epochs: usize,
    /// Minibatch size, capped at the training set size (200, scikit-learn's `"auto"`).
    pub batch_size: usize,
    /// Adam's learning rate (1e-3).
    pub lr: f64,
    /// L2 penalty `½ α ‖W‖² / batch` on the weights, not the biases (α = 1e-4, scikit-learn).
    pub l2: f64,
    /// Training stops when the epoch's mean loss has not fallen by `tol` below the best for
    /// more than `patience` epochs in a row (1e-4 and 10, scikit-learn's `tol` and
    /// `n_iter_no_change`).
    pub tol: f64,
    /// See `tol`.
    pub patience: usize,
    /// Z-score both samples by the first one's mean and standard deviation (true).
    pub z_score: bool,
    /// Seed of the fold split, the initial weights and the minibatch order (1, sbibm's).
    pub seed: u64,
}

impl Default for C2stOptions {
    fn default() -> Self {
        Self {
            folds: 5,
            hidden: None,
            max_epochs: 10_000,
            batch_size: 200,
            lr: 1e-3,
            l2: 1e-4,
            tol: 1e-4,
            patience: 10,
            z_score: true,
            seed: 1,
        }
    }
}

impl C2stOptions {
    /// Checks every field: `folds ≥ 2`, widths, epochs and batch size ≥ 1, `lr > 0`,
    /// `l2, tol ≥ 0`, all finite.
    pub fn check(&self) -> Result<(), MetricsError> {
        let bad = |name, value: String, reason| {
            Err(MetricsError::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        if self.folds < 2 {
            return bad(
                "folds",
                self.folds.to_string(),
                "cross-validation needs at least 2 folds",
            );
        }
        if let Some(h) = &self.hidden {
            if h.contains(&0) {
                return bad("hidden", format!("{h:?}"), "every layer needs a width ≥ 1");
            }
        }
        if self.max_epochs == 0 {
            return bad("max_epochs", "0".into(), "train for at least one epoch");
        }
        if self.batch_size == 0 {
            return bad(
                "batch_size",
                "0".into(),
                "a minibatch needs at least one point",
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "must be positive and finite");
        }
        for (name, v) in [("l2", self.l2), ("tol", self.tol)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(name, v.to_string(), "must be non-negative and finite");
            }
        }
        Ok(())
    }
}

/// The outcome of [`c2st`].
#[derive(Debug, Clone, PartialEq)]
pub struct C2st {
    /// The cross-validated accuracy: the mean of `fold_accuracies`. 0.5 means the classifier
    /// cannot tell the samples apart, 1 that it separates them perfectly.
    pub accuracy: f64,
    /// The held-out accuracy of each fold.
    pub fold_accuracies: Vec<f64>,
    /// The epochs each fold's classifier trained for.
    pub epochs: Vec<usize>,
}

impl C2st {
    /// The standard deviation of the accuracy of a classifier that guesses, over `n` held-out
    /// points in all: `√(¼ / n)`, the binomial spread of a fair coin's hit rate. With
    /// `n = n_a + n_b` it is the scale on which an accuracy above 0.5 is meaningful.
    ///
    /// ```
    /// assert_eq!(fm_metrics::C2st::null_std(10_000), 0.005);
    /// ```
    pub fn null_std(n: usize) -> f64 {
        (0.25 / n as f64).sqrt()
    }
}

/// The classifier two-sample test: how well an MLP classifier tells `a` from `b`, as the
/// cross-validated accuracy (sbibm's `c2st`).
///
/// Both samples are z-scored by `a`'s column means and (unbiased) standard deviations, pooled
/// with labels 0 for `a` and 1 for `b`, and split into `folds` shuffled folds. For each fold
/// an MLP (ReLU hidden layers, one logit output, Glorot-uniform initial weights) is trained on
/// the other folds with the logistic loss `softplus(z) − y z` plus an L2 penalty, by Adam on
/// minibatches, on an `fm-autograd` [`Graph`]; it predicts `b` where `z > 0`. The accuracy on
/// the held-out folds is averaged. Everything random comes from `opts.seed`: the same inputs
/// and seed give the same bits.
///
/// Each sample needs at least `folds` points (and 2); the dimensions must agree; every value
/// must be finite and no column of `a` constant (with `z_score`).
///
/// ```
/// use fm_metrics::{C2stOptions, c2st};
/// use ndarray::Array2;
/// use rand::Rng;
/// use rand_distr::StandardNormal;
/// let mut rng = fm_core::rng::seeded(0);
/// let mut draw = |shift: f64| {
///     Array2::from_shape_simple_fn((300, 2), || shift + rng.sample::<f64, _>(StandardNormal))
/// };
/// let (a, b, far) = (draw(0.0), draw(0.0), draw(6.0));
/// let opts = C2stOptions { max_epochs: 50, ..Default::default() };
/// let same = c2st(a.view(), b.view(), &opts)?.accuracy;
/// let apart = c2st(a.view(), far.view(), &opts)?.accuracy;
/// assert!((same - 0.5).abs() < 0.1 && apart > 0.99, "{same} {apart}");
/// # Ok::<(), fm_metrics::MetricsError>(())
/// ```
pub fn c2st(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    opts: &C2stOptions,
) -> Result<C2st, MetricsError> {
    opts.check()?;
    fm_core::shape::check_nonempty("first c2st sample", a)?;
    let d = a.ncols();
    check_batch("second c2st sample", b, d)?;
    check_finite("first c2st sample", a)?;
    check_finite("second c2st sample", b)?;
    let need = opts.folds.max(2);
    for (name, n) in [
        ("first c2st sample size", a.nrows()),
        ("second c2st sample size", b.nrows()),
    ] {
        if n < need {
            return Err(MetricsError::InvalidParameter {
                name,
                value: n.to_string(),
                reason: "each sample needs at least as many points as folds (5 by default) and at least 2",
            });
        }
    }
    let (n_a, n) = (a.nrows(), a.nrows() + b.nrows());
    let mut x = ndarray::concatenate(Axis(0), &[a, b]).expect("columns checked");
    if opts.z_score {
        let mean = a.mean_axis(Axis(0)).expect("non-empty");
        let std = a.std_axis(Axis(0), 1.0);
        if let Some(j) = std.iter().position(|&s| !(s > 0.0 && s.is_finite())) {
            return Err(MetricsError::InvalidParameter {
                name: "first c2st sample",
                value: format!("column {j} with standard deviation {}", std[j]),
                reason: "z-scoring divides by each column's spread: drop constant columns or set z_score = false",
            });
        }
        x -= &mean;
        x /= &std;
    }
    let x = x.mapv(|v| v as f32);
    let y = Array1::from_shape_fn(n, |i| if i < n_a { 0.0f32 } else { 1.0 });
    let widths: Vec<usize> = {
        let hidden = opts.hidden.clone().unwrap_or_else(|| vec![10 * d, 10 * d]);
        std::iter::once(d)
            .chain(hidden)
            .chain(std::iter::once(1))
            .collect()
    };
    let mut rng = fm_core::rng::seeded(opts.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let (mut fold_accuracies, mut epochs) = (Vec::new(), Vec::new());
    let mut start = 0;
    for k in 0..opts.folds {
        let size = n / opts.folds + usize::from(k < n % opts.folds);
        let test = &order[start..start + size];
        let train: Vec<usize> = order[..start]
            .iter()
            .chain(&order[start + size..])
            .copied()
            .collect();
        start += size;
        let mut net = Classifier::new(&widths, &mut rng);
        let e = net.fit(&x, &y, &train, opts, &mut rng)?;
        let logits = net.logits(&x.select(Axis(0), test));
        let hits = test
            .iter()
            .zip(&logits)
            .filter(|&(&i, &z)| (z > 0.0) == (y[i] > 0.5))
            .count();
        fold_accuracies.push(hits as f64 / size as f64);
        epochs.push(e);
    }
    let accuracy = fold_accuracies.iter().sum::<f64>() / opts.folds as f64;
    Ok(C2st {
        accuracy,
        fold_accuracies,
        epochs,
    })
}

/// A ReLU MLP with one logit output; the parameters live in one flat vector for Adam:
/// per layer the weights `(in, out)` row-major, then the biases.
struct Classifier {
    widths: Vec<usize>,
    params: Vec<f32>,
}

impl Classifier {
    fn new(widths: &[usize], rng: &mut impl Rng) -> Self {
        let mut params = Vec::new();
        for w in widths.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            // Glorot uniform, scikit-learn's initialisation.
            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            for _ in 0..(fan_in + 1) * fan_out {
                params.push(rng.random_range(-bound..bound));
            }
        }
        Self {
            widths: widths.to_vec(),
            params,
        }
    }

    /// The slices of layer `l`'s weights and biases in `params`.
    fn layer(&self, l: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let off: usize = self
            .widths
            .windows(2)
            .take(l)
            .map(|w| (w[0] + 1) * w[1])
            .sum();
        let (i, o) = (self.widths[l], self.widths[l + 1]);
        (off..off + i * o, off + i * o..off + (i + 1) * o)
    }

    fn weights(&self, l: usize) -> (Array2<f32>, Array2<f32>) {
        let (w, b) = self.layer(l);
        let (i, o) = (self.widths[l], self.widths[l + 1]);
        (
            Array2::from_shape_vec((i, o), self.params[w].to_vec()).expect("sizes"),
            Array2::from_shape_vec((1, o), self.params[b].to_vec()).expect("sizes"),
        )
    }

    fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    fn logits(&self, x: &Array2<f32>) -> Vec<f32> {
        let mut h = x.clone();
        for l in 0..self.layers() {
            let (w, b) = self.weights(l);
            h = h.dot(&w) + &b;
            if l + 1 < self.layers() {
                h.mapv_inplace(|v| v.max(0.0));
            }
        }
        h.column(0).to_vec()
    }

    /// The loss `mean(softplus(z) − y z)` of a minibatch and its gradient, with the L2 penalty.
    fn loss_and_grad(&self, x: Array2<f32>, y: Array2<f32>, l2: f32) -> (f64, Vec<f32>) {
        let mut g = Graph::<f32>::new();
        let batch = x.nrows() as f32;
        let mut h = g.leaf(x);
        let mut vars = Vec::new();
        for l in 0..self.layers() {
            let (w, b) = self.weights(l);
            let (w, b) = (g.leaf(w), g.leaf(b));
            vars.push((w, b));
            let z = g.matmul(h, w).expect("shapes by construction");
            h = g.add_bias(z, b).expect("shapes by construction");
            if l + 1 < self.layers() {
                h = g.activate(h, Activation::Relu).expect("shapes");
            }
        }
        let y = g.leaf(y);
        let sp = g.activate(h, Activation::Softplus).expect("shapes");
        let yz = g.mul(y, h).expect("shapes");
        let per = g.sub(sp, yz).expect("shapes");
        let loss = g.mean(per).expect("non-empty batch");
        let grads = g.backward(loss).expect("scalar loss");
        let mut flat = vec![0.0f32; self.params.len()];
        let mut penalty = 0.0f64;
        for (l, &(w, b)) in vars.iter().enumerate() {
            let (rw, rb) = self.layer(l);
            for ((f, &gw), &p) in flat[rw.clone()]
                .iter_mut()
                .zip(grads.get(w).expect("on the path").iter())
                .zip(&self.params[rw])
            {
                *f = gw + l2 * p / batch;
                penalty += (p as f64) * (p as f64);
            }
            for (f, &gb) in flat[rb]
                .iter_mut()
                .zip(grads.get(b).expect("on the path").iter())
            {
                *f = gb;
            }
        }
        let value = g.value(loss)[[0, 0]] as f64 + 0.5 * l2 as f64 * penalty / batch as f64;
        (value, flat)
    }

    /// Trains on the rows `train` of `x`; returns the epochs run.
    fn fit(
        &mut self,
        x: &Array2<f32>,
        y: &Array1<f32>,
        train: &[usize],
        opts: &C2stOptions,
        rng: &mut impl Rng,
    ) -> Result<usize, MetricsError> {
        let mut adam = Adam::new(AdamConfig {
            lr: opts.lr,
            ..AdamConfig::default()
        })
        .map_err(|e| MetricsError::InvalidParameter {
            name: "lr",
            value: format!("{} ({e})", opts.lr),
            reason: "adam rejected it",
        })?;
        let batch = opts.batch_size.min(train.len());
        let mut idx = train.to_vec();
        let (mut best, mut stale) = (f64::INFINITY, 0);
        for epoch in 1..=opts.max_epochs {
            idx.shuffle(rng);
            let mut total = 0.0;
            for chunk in idx.chunks(batch) {
                let xb = x.select(Axis(0), chunk);
                let yb = Array2::from_shape_fn((chunk.len(), 1), |(i, _)| y[chunk[i]]);
                let (loss, grads) = self.loss_and_grad(xb, yb, opts.l2 as f32);
                if !loss.is_finite() {
                    return Err(MetricsError::InvalidParameter {
                        name: "lr",
                        value: opts.lr.to_string(),
                        reason: "the classifier's training loss became non-finite: lower the learning rate",
                    });
                }
                adam.update(&mut self.params, &grads)
                    .expect("gradient has the parameters' length");
                total += loss * chunk.len() as f64;
            }
            let mean = total / idx.len() as f64;
            // scikit-learn's rule (`_update_no_improvement_count` without early stopping).
            if mean > best - opts.tol {
                stale += 1;
            } else {
                stale = 0;
            }
            best = best.min(mean);
            if stale > opts.patience {
                return Ok(epoch);
            }
        }
        Ok(opts.max_epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_gradient_matches_finite_differences() {
        let mut rng = fm_core::rng::seeded(3);
        let net = Classifier::new(&[2, 5, 4, 1], &mut rng);
        let x = array![[0.3f32, -1.2], [1.5, 0.4], [-0.7, 0.9]];
        let y = array![[0.0f32], [1.0], [1.0]];
        let (_, grad) = net.loss_and_grad(x.clone(), y.clone(), 0.1);
        let mut worst = 0.0f64;
        for k in (0..net.params.len()).step_by(3) {
            let h = 1e-2f32;
            let mut plus = Classifier {
                widths: net.widths.clone(),
                params: net.params.clone(),
            };
            let mut minus = Classifier {
                widths: net.widths.clone(),
                params: net.params.clone(),
            };
            plus.params[k] += h;
            minus.params[k] -= h;
            let fd = (plus.loss_and_grad(x.clone(), y.clone(), 0.1).0
                - minus.loss_and_grad(x.clone(), y.clone(), 0.1).0)
                / (2.0 * h as f64);
            worst = worst.max((fd - grad[k] as f64).abs());
        }
        assert!(worst < 2e-3, "largest gradient error {worst}");
    }
}
