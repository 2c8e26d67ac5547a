//! Flat parameter storage with named 2-D tensors, and a small MLP written with graph ops.

use crate::Result;
use fm_autograd::{Activation, GradStore, Graph, Var};
use ndarray::{Array2, ArrayView2};
use rand::Rng;
use std::cell::RefCell;
use std::collections::HashMap;

/// One named tensor of a flat parameter vector: `rows × cols` values from `offset`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The tensor's name in a model file, e.g. `coupling.0.linear.1.weight`.
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The index of its first value in the flat vector.
    pub offset: usize,
}

impl ParamSpec {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// Whether the tensor has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tensors of a model in order; [`Layout::push`] appends one and returns its index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) specs: Vec<ParamSpec>,
    pub(crate) total: usize,
}

impl Layout {
    pub(crate) fn push(&mut self, name: String, rows: usize, cols: usize) -> usize {
        self.specs.push(ParamSpec {
            name,
            rows,
            cols,
            offset: self.total,
        });
        self.total += rows * cols;
        self.specs.len() - 1
    }

    /// A view of tensor `i` in `params`.
    pub(crate) fn view<'a>(&self, params: &'a [f64], i: usize) -> ArrayView2<'a, f64> {
        let s = &self.specs[i];
        ArrayView2::from_shape((s.rows, s.cols), &params[s.offset..s.offset + s.len()])
            .expect("layout sizes are consistent")
    }

    /// Every tensor as a leaf of `g`, in layout order.
    pub(crate) fn leaves(&self, g: &mut Graph<f64>, params: &[f64]) -> Vec<Var> {
        (0..self.specs.len())
            .map(|i| g.leaf(self.view(params, i).to_owned()))
            .collect()
    }

    /// The mean negative log-likelihood of the per-point log-densities `lp` (an `(n, 1)` node of
    /// `g`) and its gradient with respect to the parameter leaves `vars`, flattened in layout
    /// order: the tail every model's `nll_and_grad` shares.
    pub(crate) fn mean_nll_and_grad(
        &self,
        g: &mut Graph<f64>,
        lp: Var,
        vars: &[Var],
    ) -> Result<(f64, Vec<f64>)> {
        let mean = g.mean(lp)?;
        let nll = g.scale(mean, -1.0)?;
        let grads = g.backward(nll)?;
        Ok((g.value(nll)[[0, 0]], self.flatten(&grads, vars)))
    }

    /// The gradients of the leaves `vars` flattened in layout order (zeros where unused).
    pub(crate) fn flatten(&self, grads: &GradStore<f64>, vars: &[Var]) -> Vec<f64> {
        let mut out = vec![0.0; self.total];
        for (s, v) in self.specs.iter().zip(vars) {
            if let Some(g) = grads.get(*v) {
                out[s.offset..s.offset + s.len()]
                    .iter_mut()
                    .zip(g.iter())
                    .for_each(|(o, &x)| *o = x);
            }
        }
        out
    }
}

/// An MLP of graph ops: `widths = [in, h_1, …, out]`, weights `(in, out)` so a layer is
/// `x W + b`; the activation after every layer but the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphMlp {
    /// Indices into the layout: (weight, bias) per layer.
    pub(crate) layers: Vec<(usize, usize)>,
    pub(crate) activation: Activation,
}

impl GraphMlp {
    pub(crate) fn new(
        layout: &mut Layout,
        prefix: &str,
        widths: &[usize],
        act: Activation,
    ) -> Self {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| {
                let wi = layout.push(format!("{prefix}.linear.{l}.weight"), w[0], w[1]);
                let bi = layout.push(format!("{prefix}.linear.{l}.bias"), 1, w[1]);
                (wi, bi)
            })
            .collect();
        Self {
            layers,
            activation: act,
        }
    }

    /// PyTorch's default initialisation `U(−1/√fan_in, 1/√fan_in)` for every layer, except the
    /// last, which is zero (so a fresh flow is the identity, the usual start for RealNVP).
    pub(crate) fn init<R: Rng + ?Sized>(&self, layout: &Layout, params: &mut [f64], rng: &mut R) {
        for (l, &(wi, bi)) in self.layers.iter().enumerate() {
            let last = l + 1 == self.layers.len();
            let bound = 1.0 / (layout.specs[wi].rows as f64).sqrt();
            for i in [wi, bi] {
                let s = &layout.specs[i];
                for p in &mut params[s.offset..s.offset + s.len()] {
                    *p = if last {
                        0.0
                    } else {
                        rng.random_range(-bound..bound)
                    };
                }
            }
        }
    }

    pub(crate) fn forward(&self, g: &mut Graph<f64>, x: Var, p: &[Var]) -> Result<Var> {
        let mut h = x;
        for (l, &(wi, bi)) in self.layers.iter().enumerate() {
            let z = g.matmul(h, p[wi])?;
            let z = g.add_bias(z, p[bi])?;
            h = if l + 1 < self.layers.len() {
                g.activate(z, self.activation)?
            } else {
                z
            };
        }
        Ok(h)
    }
}

/// Arrays of earlier passes by shape, reused so that a training loop does not map, fault in
/// and unmap fresh pages every step. A thread keeps what its largest step needed (the arrays
/// one step's tape would allocate anyway: about 30 MB for the bench's CNF, 5 MB for its
/// coupling flow).
#[derive(Default)]
pub(crate) struct Pool(HashMap<(usize, usize), Vec<Array2<f64>>>);

impl Pool {
    /// An `(rows, cols)` array with stale contents (the caller overwrites every entry).
    pub(crate) fn take(&mut self, rows: usize, cols: usize) -> Array2<f64> {
        self.0
            .get_mut(&(rows, cols))
            .and_then(Vec::pop)
            .unwrap_or_else(|| Array2::zeros((rows, cols)))
    }

    /// An `(rows, cols)` array of zeros.
    pub(crate) fn zeros(&mut self, rows: usize, cols: usize) -> Array2<f64> {
        let mut a = self.take(rows, cols);
        a.fill(0.0);
        a
    }

    /// Keeps `a` for a later [`Pool::take`].
    pub(crate) fn put(&mut self, a: Array2<f64>) {
        self.0.entry(a.dim()).or_default().push(a);
    }

    /// Keeps every array of `it`.
    pub(crate) fn extend(&mut self, it: impl IntoIterator<Item = Array2<f64>>) {
        it.into_iter().for_each(|a| self.put(a));
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// This thread's pool (empty on first use); hand it back with [`give_pool`].
pub(crate) fn take_pool() -> Pool {
    POOL.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// Returns a pass's pool to this thread.
pub(crate) fn give_pool(pool: Pool) {
    POOL.with(|p| *p.borrow_mut() = pool);
}

/// A constant `(n, 1)` column of ones, for broadcasting rows with `matmul`.
pub(crate) fn ones_col(g: &mut Graph<f64>, n: usize) -> Var {
    g.leaf(Array2::ones((n, 1)))
}
