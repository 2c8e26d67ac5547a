use crate::error::{AutogradError, Result, shape_err};
use crate::{Activation, Float};
use ndarray::{Array2, Axis, Zip};

/// A handle to a node of a [`Graph`]: the index of its value on the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var(pub usize);

/// How a node was computed from earlier nodes; one `match` in [`Graph::backward_with`] gives
/// each its backward rule.
#[derive(Debug, Clone)]
enum Op<F> {
    Leaf,
    MatMul(Var, Var),
    AddBias(Var, Var),
    Add(Var, Var),
    Sub(Var, Var),
    Mul(Var, Var),
    Scale(Var, F),
    AddScalar(Var),
    Concat(Vec<Var>),
    Sum(Var),
    Mean(Var),
    Mse(Var, Var),
    Act(Var, Activation),
    Sin(Var),
    Cos(Var),
    Exp(Var),
    Log(Var),
    Div(Var, Var),
    MulConst(Var, Array2<F>),
    SelectCols(Var, Vec<usize>),
    RowSum(Var),
    MulCol(Var, Var),
    ActDeriv(Var, Activation),
}

/// An append-only tape of batched 2-D values: each operation computes its value at once
/// (eager) and records how, so [`Graph::backward`] can run the chain rule in reverse.
///
/// Every value is an `(rows, cols)` array; scalars (sums, means, losses) are `1 × 1`.
///
/// ```
/// use fm_autograd::{Activation, Graph};
/// use ndarray::array;
/// let mut g = Graph::<f64>::new();
/// let x = g.leaf(array![[1.0, -2.0]]);
/// let w = g.leaf(array![[0.5], [0.25]]);
/// let z = g.matmul(x, w).unwrap(); // 1·0.5 − 2·0.25 = 0
/// let y = g.activate(z, Activation::Tanh).unwrap();
/// let loss = g.sum(y).unwrap();
/// let grads = g.backward(loss).unwrap();
/// // d loss / d w = xᵀ · tanh'(0) = xᵀ
/// assert_eq!(grads.get(w).unwrap(), &array![[1.0], [-2.0]]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Graph<F> {
    values: Vec<Array2<F>>,
    ops: Vec<Op<F>>,
}

/// The gradients of one backward pass, one entry per node of the [`Graph`].
#[derive(Debug, Clone)]
pub struct GradStore<F> {
    grads: Vec<Option<Array2<F>>>,
}

impl<F: Float> GradStore<F> {
    /// The gradient with respect to `v`, or `None` if the output does not depend on it.
    pub fn get(&self, v: Var) -> Option<&Array2<F>> {
        self.grads.get(v.0).and_then(|g| g.as_ref())
    }
}

fn dims<F>(a: &Array2<F>) -> String {
    format!("({}, {})", a.nrows(), a.ncols())
}

impl<F: Float> Graph<F> {
    /// An empty tape.
    pub fn new() -> Self {
        Self {
            values: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if no node was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `v`. Panics if `v` is not from this graph (use [`Graph::try_value`] to check).
    pub fn value(&self, v: Var) -> &Array2<F> {
        &self.values[v.0]
    }

    /// The value of `v`, or an error if `v` is not from this graph.
    pub fn try_value(&self, v: Var) -> Result<&Array2<F>> {
        self.values.get(v.0).ok_or(AutogradError::UnknownVar {
            index: v.0,
            len: self.values.len(),
        })
    }

    fn push(&mut self, value: Array2<F>, op: Op<F>) -> Var {
        self.values.push(value);
        self.ops.push(op);
        Var(self.values.len() - 1)
    }

    /// A leaf: an input or a parameter. Backward gives its gradient too.
    pub fn leaf(&mut self, value: Array2<F>) -> Var {
        self.push(value, Op::Leaf)
    }

    /// The matrix product `a · b` of `(n, k)` and `(k, m)`.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (va, vb) = (self.try_value(a)?, self.try_value(b)?);
        if va.ncols() != vb.nrows() {
            return Err(shape_err(
                "matmul right operand",
                format!("({}, _)", va.ncols()),
                dims(vb),
            ));
        }
        let v = va.dot(vb);
        Ok(self.push(v, Op::MatMul(a, b)))
    }

    /// `a + b` with the row `b` of shape `(1, m)` broadcast over the `n` rows of `a`.
    pub fn add_bias(&mut self, a: Var, b: Var) -> Result<Var> {
        let (va, vb) = (self.try_value(a)?, self.try_value(b)?);
        if vb.dim() != (1, va.ncols()) {
            return Err(shape_err("bias", format!("(1, {})", va.ncols()), dims(vb)));
        }
        let v = va + vb;
        Ok(self.push(v, Op::AddBias(a, b)))
    }

    fn same_shape(&self, a: Var, b: Var) -> Result<()> {
        let (va, vb) = (self.try_value(a)?, self.try_value(b)?);
        if va.dim() != vb.dim() {
            return Err(shape_err("elementwise right operand", dims(va), dims(vb)));
        }
        Ok(())
    }

    /// Elementwise `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape(a, b)?;
        let v = &self.values[a.0] + &self.values[b.0];
        Ok(self.push(v, Op::Add(a, b)))
    }

    /// Elementwise `a − b` (same shapes).
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape(a, b)?;
        let v = &self.values[a.0] - &self.values[b.0];
        Ok(self.push(v, Op::Sub(a, b)))
    }

    /// Elementwise `a ⊙ b` (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape(a, b)?;
        let v = &self.values[a.0] * &self.values[b.0];
        Ok(self.push(v, Op::Mul(a, b)))
    }

    /// `c · a` for a constant `c`.
    pub fn scale(&mut self, a: Var, c: F) -> Result<Var> {
        let v = self.try_value(a)?.mapv(|x| x * c);
        Ok(self.push(v, Op::Scale(a, c)))
    }

    /// `a + c` for a constant `c`.
    pub fn add_scalar(&mut self, a: Var, c: F) -> Result<Var> {
        let v = self.try_value(a)?.mapv(|x| x + c);
        Ok(self.push(v, Op::AddScalar(a)))
    }

    /// The columns of `parts` side by side; all parts have the same number of rows.
    pub fn concat_cols(&mut self, parts: &[Var]) -> Result<Var> {
        let views = parts
            .iter()
            .map(|&p| self.try_value(p).map(|v| v.view()))
            .collect::<Result<Vec<_>>>()?;
        if views.is_empty() {
            return Err(AutogradError::Empty {
                what: "concat parts".into(),
            });
        }
        let n = views[0].nrows();
        if let Some(bad) = views.iter().find(|v| v.nrows() != n) {
            return Err(shape_err(
                "concat part",
                format!("({n}, _)"),
                format!("{:?}", bad.dim()),
            ));
        }
        let v = ndarray::concatenate(Axis(1), &views).expect("rows checked");
        Ok(self.push(v, Op::Concat(parts.to_vec())))
    }

    /// The sum of all entries, a `1 × 1` value.
    pub fn sum(&mut self, a: Var) -> Result<Var> {
        let v = self.try_value(a)?.sum();
        Ok(self.push(Array2::from_elem((1, 1), v), Op::Sum(a)))
    }

    /// The mean of all entries, a `1 × 1` value; an error for an empty array.
    pub fn mean(&mut self, a: Var) -> Result<Var> {
        let va = self.try_value(a)?;
        if va.is_empty() {
            return Err(AutogradError::Empty {
                what: "mean input".into(),
            });
        }
        let v = va.sum() / F::from_f64(va.len() as f64);
        Ok(self.push(Array2::from_elem((1, 1), v), Op::Mean(a)))
    }

    /// The mean squared error `mean((a − b)²)` over all entries, a `1 × 1` value.
    pub fn mse(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape(a, b)?;
        let (va, vb) = (&self.values[a.0], &self.values[b.0]);
        if va.is_empty() {
            return Err(AutogradError::Empty {
                what: "mse input".into(),
            });
        }
        let mut acc = F::zero();
        Zip::from(va)
            .and(vb)
            .for_each(|&x, &y| acc += (x - y) * (x - y));
        let v = acc / F::from_f64(va.len() as f64);
        Ok(self.push(Array2::from_elem((1, 1), v), Op::Mse(a, b)))
    }

    /// The activation `f` applied elementwise.
    pub fn activate(&mut self, a: Var, f: Activation) -> Result<Var> {
        let v = self.try_value(a)?.mapv(|z| f.eval(z).0);
        Ok(self.push(v, Op::Act(a, f)))
    }

    /// Elementwise sine.
    pub fn sin(&mut self, a: Var) -> Result<Var> {
        let v = self.try_value(a)?.mapv(F::sin);
        Ok(self.push(v, Op::Sin(a)))
    }

    /// Elementwise cosine.
    pub fn cos(&mut self, a: Var) -> Result<Var> {
        let v = self.try_value(a)?.mapv(F::cos);
        Ok(self.push(v, Op::Cos(a)))
    }

    /// Elementwise `e^a`.
    pub fn exp(&mut self, a: Var) -> Result<Var> {
        let v = self.try_value(a)?.mapv(F::exp);
        Ok(self.push(v, Op::Exp(a)))
    }

    /// Elementwise natural logarithm; an error if an entry is not positive (no silent NaN).
    pub fn log(&mut self, a: Var) -> Result<Var> {
        let va = self.try_value(a)?;
        if let Some((index, &x)) = va
            .iter()
            .enumerate()
            .find(|(_, x)| (**x).partial_cmp(&F::zero()) != Some(std::cmp::Ordering::Greater))
        {
            return Err(AutogradError::NonFinite {
                what: "log of a non-positive entry (log input)".into(),
                index,
                value: x.to_f64(),
            });
        }
        let v = va.mapv(F::ln);
        Ok(self.push(v, Op::Log(a)))
    }

    /// Elementwise `a / b` (same shapes); an error if an entry of `b` is zero.
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape(a, b)?;
        let vb = &self.values[b.0];
        if let Some(index) = vb.iter().position(|x| *x == F::zero()) {
            return Err(AutogradError::NonFinite {
                what: "division by a zero entry of the denominator".into(),
                index,
                value: 0.0,
            });
        }
        let v = &self.values[a.0] / vb;
        Ok(self.push(v, Op::Div(a, b)))
    }

    /// Elementwise `a ⊙ m` with a constant `m` of the same shape (e.g. a 0/1 mask); no gradient
    /// flows to `m`.
    pub fn mul_const(&mut self, a: Var, m: Array2<F>) -> Result<Var> {
        let va = self.try_value(a)?;
        if va.dim() != m.dim() {
            return Err(shape_err("constant factor (mask)", dims(va), dims(&m)));
        }
        let v = va * &m;
        Ok(self.push(v, Op::MulConst(a, m)))
    }

    /// The columns `cols` of `a`, in that order, shape `(n, cols.len())`. An index may repeat
    /// (its gradients add up), so this also permutes and, with [`Graph::concat_cols`],
    /// scatters columns back into place.
    pub fn select_cols(&mut self, a: Var, cols: &[usize]) -> Result<Var> {
        let va = self.try_value(a)?;
        if let Some(&bad) = cols.iter().find(|&&c| c >= va.ncols()) {
            return Err(shape_err("column index", format!("< {}", va.ncols()), bad));
        }
        let v = va.select(Axis(1), cols);
        Ok(self.push(v, Op::SelectCols(a, cols.to_vec())))
    }

    /// The sum of each row, `(n, k) → (n, 1)`.
    pub fn row_sum(&mut self, a: Var) -> Result<Var> {
        let v = self.try_value(a)?.sum_axis(Axis(1)).insert_axis(Axis(1));
        Ok(self.push(v, Op::RowSum(a)))
    }

    /// `a ⊙ c` with the column `c` of shape `(n, 1)` broadcast over the `k` columns of `a`.
    pub fn mul_col(&mut self, a: Var, c: Var) -> Result<Var> {
        let (va, vc) = (self.try_value(a)?, self.try_value(c)?);
        if vc.dim() != (va.nrows(), 1) {
            return Err(shape_err(
                "column factor",
                format!("({}, 1)", va.nrows()),
                dims(vc),
            ));
        }
        let v = va * vc;
        Ok(self.push(v, Op::MulCol(a, c)))
    }

    /// The activation's derivative `f'(z)` elementwise, itself differentiable (its backward
    /// uses `f''`), so a forward-mode tangent can be written with graph ops and differentiated
    /// again.
    ///
    /// The pattern: for a layer `h = f(z)`, `z = x W + b`, a tangent `ẋ` moves as
    /// `ż = ẋ W` and `ḣ = f'(z) ⊙ ż`; with `ẋ = e_j` for each `j`, the `j`-th column of the
    /// output's tangent summed over `j` is the exact divergence `∂_j v_j`, a node like any
    /// other (FFJORD's log-density term; residual flows' `vᵀ J v` Hutchinson terms likewise).
    ///
    /// ```
    /// use fm_autograd::{Activation, Graph};
    /// use ndarray::array;
    /// // v(x) = tanh(x w) for scalar x: dv/dx = w tanh'(x w); its gradient in w by backward.
    /// let mut g = Graph::<f64>::new();
    /// let x = g.leaf(array![[0.3]]);
    /// let w = g.leaf(array![[2.0]]);
    /// let z = g.matmul(x, w).unwrap();
    /// let fp = g.act_deriv(z, Activation::Tanh).unwrap();
    /// let dv = g.mul(fp, w).unwrap(); // dv/dx
    /// let grads = g.backward(dv).unwrap();
    /// let (zz, t) = (0.6_f64, 0.6_f64.tanh());
    /// // d/dw [w (1 − tanh²(x w))] = (1 − t²) − 2 w x t (1 − t²)
    /// let want = (1.0 - t * t) - 2.0 * 2.0 * 0.3 * t * (1.0 - t * t);
    /// assert!((grads.get(w).unwrap()[[0, 0]] - want).abs() < 1e-12 && zz > 0.0);
    /// ```
    pub fn act_deriv(&mut self, z: Var, f: Activation) -> Result<Var> {
        let v = self.try_value(z)?.mapv(|z| f.eval(z).1);
        Ok(self.push(v, Op::ActDeriv(z, f)))
    }

    /// Reverse mode from a `1 × 1` output: the gradient of `out` with respect to every node.
    pub fn backward(&self, out: Var) -> Result<GradStore<F>> {
        let v = self.try_value(out)?;
        if v.dim() != (1, 1) {
            return Err(shape_err("backward output", "(1, 1)", dims(v)));
        }
        self.backward_with(out, Array2::from_elem((1, 1), F::one()))
    }

    /// Reverse mode from any output with the cotangent `seed` (same shape as `out`): the
    /// vector-Jacobian products `seedᵀ · ∂out/∂node` for every node.
    pub fn backward_with(&self, out: Var, seed: Array2<F>) -> Result<GradStore<F>> {
        let v = self.try_value(out)?;
        if v.dim() != seed.dim() {
            return Err(shape_err("backward seed", dims(v), dims(&seed)));
        }
        let mut grads: Vec<Option<Array2<F>>> = vec![None; out.0 + 1];
        grads[out.0] = Some(seed);
        for i in (0..=out.0).rev() {
            let Some(g) = grads[i].take() else { continue };
            let val = |v: Var| &self.values[v.0];
            let mut acc = |v: Var, d: Array2<F>| match &mut grads[v.0] {
                Some(e) => *e += &d,
                slot => *slot = Some(d),
            };
            match &self.ops[i] {
                Op::Leaf => {}
                Op::MatMul(a, b) => {
                    acc(*a, g.dot(&val(*b).t()));
                    acc(*b, val(*a).t().dot(&g));
                }
                Op::AddBias(a, b) => {
                    acc(*b, g.sum_axis(Axis(0)).insert_axis(Axis(0)));
                    acc(*a, g.clone());
                }
                Op::Add(a, b) => {
                    acc(*a, g.clone());
                    acc(*b, g.clone());
                }
                Op::Sub(a, b) => {
                    acc(*a, g.clone());
                    acc(*b, g.mapv(|x| -x));
                }
                Op::Mul(a, b) => {
                    acc(*a, &g * val(*b));
                    acc(*b, &g * val(*a));
                }
                Op::Scale(a, c) => acc(*a, g.mapv(|x| x * *c)),
                Op::AddScalar(a) => acc(*a, g.clone()),
                Op::Concat(parts) => {
                    let mut col = 0;
                    for p in parts {
                        let w = val(*p).ncols();
                        acc(*p, g.slice_axis(Axis(1), (col..col + w).into()).to_owned());
                        col += w;
                    }
                }
                Op::Sum(a) => acc(*a, Array2::from_elem(val(*a).raw_dim(), g[[0, 0]])),
                Op::Mean(a) => {
                    let n = F::from_f64(val(*a).len() as f64);
                    acc(*a, Array2::from_elem(val(*a).raw_dim(), g[[0, 0]] / n));
                }
                Op::Mse(a, b) => {
                    let c = g[[0, 0]] * F::from_f64(2.0 / val(*a).len() as f64);
                    let d = (val(*a) - val(*b)).mapv(|x| x * c);
                    acc(*b, d.mapv(|x| -x));
                    acc(*a, d);
                }
                Op::Act(a, f) => {
                    let mut d = g.clone();
                    Zip::from(&mut d)
                        .and(val(*a))
                        .for_each(|d, &z| *d *= f.eval(z).1);
                    acc(*a, d);
                }
                Op::Sin(a) => acc(*a, &g * &val(*a).mapv(F::cos)),
                Op::Cos(a) => acc(*a, &g * &val(*a).mapv(|x| -x.sin())),
                Op::Exp(a) => acc(*a, &g * &self.values[i]),
                Op::Log(a) => acc(*a, &g / val(*a)),
                Op::Div(a, b) => {
                    let ga = &g / val(*b);
                    // d(a/b)/db = −(a/b)/b, so the cotangent of b is −(g/b) ⊙ (a/b).
                    acc(*b, (&ga * &self.values[i]).mapv(|x| -x));
                    acc(*a, ga);
                }
                Op::MulConst(a, m) => acc(*a, &g * m),
                Op::SelectCols(a, cols) => {
                    let mut d = Array2::zeros(val(*a).raw_dim());
                    for (k, &c) in cols.iter().enumerate() {
                        let mut dst = d.column_mut(c);
                        dst += &g.column(k);
                    }
                    acc(*a, d);
                }
                Op::RowSum(a) => {
                    let d = Array2::from_shape_fn(val(*a).raw_dim(), |(r, _)| g[[r, 0]]);
                    acc(*a, d);
                }
                Op::MulCol(a, c) => {
                    acc(*c, (&g * val(*a)).sum_axis(Axis(1)).insert_axis(Axis(1)));
                    acc(*a, &g * val(*c));
                }
                Op::ActDeriv(a, f) => {
                    let mut d = g.clone();
                    Zip::from(&mut d)
                        .and(val(*a))
                        .for_each(|d, &z| *d *= f.second_derivative(z));
                    acc(*a, d);
                }
            }
            grads[i] = Some(g);
        }
        Ok(GradStore { grads })
    }
}
