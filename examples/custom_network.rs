//! Train your own network through the library's training loop: a residual MLP, written here on
//! `fm-autograd`'s tape (`Graph`), implements `TrainableField` and gets the `Trainer`'s batches,
//! Adam, EMA, divergence rule, checkpoints and resume; the trained EMA network is then an
//! `fm_core::VectorField` that `fm-ode` integrates from N(0, I) to the moons.
//!
//! `cargo run --example custom_network`

use flow_matching::autograd::{Activation, Graph, Var};
use flow_matching::core::rng::seeded;
use flow_matching::data::Dataset;
use flow_matching::metrics::w2;
use flow_matching::ode::{Integrator, Rk4};
use flow_matching::train::tensors::{Tensor, TensorData};
use flow_matching::train::{
    Batch, Checkpoint, MatcherSpec, Objective, TrainError, TrainParams, TrainableField, TrainedNet,
    Trainer,
};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A residual MLP: `h_0 = W_in [x, t] + b_in`,
/// `h_{k+1} = h_k + W_k,2 silu(W_k,1 h_k + b_k,1) + b_k,2` for each block, `v = W_out h_K + b_out`.
/// Weights are stored as PyTorch stores them, `(out, in)` row-major, one flat vector.
#[derive(Debug, Clone)]
struct ResMlp {
    dim: usize,
    width: usize,
    blocks: usize,
    params: Vec<f32>,
}

impl ResMlp {
    /// The linear layers' names and `(out, in)` shapes, in the order of the flat parameters.
    fn layers(&self) -> Vec<(String, usize, usize)> {
        let (d, w) = (self.dim, self.width);
        let mut v = vec![("input".to_string(), w, d + 1)];
        for k in 0..self.blocks {
            v.push((format!("blocks.{k}.0"), w, w));
            v.push((format!("blocks.{k}.1"), w, w));
        }
        v.push(("output".to_string(), d, w));
        v
    }

    /// PyTorch's `nn.Linear` initialisation, U(−1/√in, 1/√in), with each block's second layer
    /// scaled by 0.1 so the network starts close to its skip connections.
    fn new(dim: usize, width: usize, blocks: usize, rng: &mut impl Rng) -> Self {
        let mut net = Self {
            dim,
            width,
            blocks,
            params: Vec::new(),
        };
        for (name, out, inp) in net.layers() {
            let b = 1.0 / (inp as f32).sqrt() * if name.ends_with(".1") { 0.1 } else { 1.0 };
            net.params
                .extend((0..out * inp + out).map(|_| rng.random_range(-b..b)));
        }
        net
    }

    /// Builds the network on a tape; returns the output and each layer's (weightᵀ, bias) leaves.
    fn forward(
        &self,
        g: &mut Graph<f32>,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
    ) -> Result<(Var, Vec<(Var, Var)>), TrainError> {
        let tv = g.leaf(t.mapv(|v| v as f32).insert_axis(Axis(1)));
        let xv = g.leaf(x.mapv(|v| v as f32));
        let input = g.concat_cols(&[xv, tv])?;
        let mut leaves = Vec::new();
        let mut at = 0;
        for (_, out, inp) in self.layers() {
            let w = Array2::from_shape_vec((out, inp), self.params[at..at + out * inp].to_vec())
                .expect("the layout fits");
            at += out * inp;
            let b = Array2::from_shape_vec((1, out), self.params[at..at + out].to_vec())
                .expect("the layout fits");
            at += out;
            leaves.push((g.leaf(w.t().to_owned()), g.leaf(b)));
        }
        let linear = |g: &mut Graph<f32>, h: Var, (w, b): (Var, Var)| -> Result<Var, TrainError> {
            let z = g.matmul(h, w)?;
            Ok(g.add_bias(z, b)?)
        };
        let mut h = linear(g, input, leaves[0])?;
        for k in 0..self.blocks {
            let z = linear(g, h, leaves[1 + 2 * k])?;
            let a = g.activate(z, Activation::Silu)?;
            let r = linear(g, a, leaves[2 + 2 * k])?;
            h = g.add(h, r)?;
        }
        let out = linear(g, h, leaves[1 + 2 * self.blocks])?;
        Ok((out, leaves))
    }
}

impl TrainableField for ResMlp {
    fn dim(&self) -> usize {
        self.dim
    }
    fn params(&self) -> &[f32] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    fn loss_and_grad(&mut self, batch: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
        let mut g = Graph::new();
        let (out, leaves) = self.forward(&mut g, batch.t.view(), batch.x_t.view())?;
        let target = g.leaf(batch.target.mapv(|v| v as f32));
        let loss = g.mse(out, target)?;
        let store = g.backward(loss)?;
        // Back into the flat layout: weight gradients transposed to (out, in).
        let mut at = 0;
        for ((_, o, i), (w, b)) in self.layers().into_iter().zip(leaves) {
            let (dst, rest) = grads[at..].split_at_mut(o * i);
            match store.get(w) {
                Some(gw) => dst.iter_mut().zip(gw.t().iter()).for_each(|(d, &s)| *d = s),
                None => dst.fill(0.0),
            }
            match store.get(b) {
                Some(gb) => rest[..o]
                    .iter_mut()
                    .zip(gb.iter())
                    .for_each(|(d, &s)| *d = s),
                None => rest[..o].fill(0.0),
            }
            at += o * i + o;
        }
        Ok(f64::from(g.value(loss)[[0, 0]]))
    }
    fn velocity(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>, TrainError> {
        let mut g = Graph::new();
        let (out, _) = self.forward(&mut g, t, x)?;
        Ok(g.value(out).mapv(f64::from))
    }
    fn architecture(&self) -> String {
        format!(
            "resmlp dim={} width={} blocks={} silu",
            self.dim, self.width, self.blocks
        )
    }
    fn to_tensors(&self) -> Vec<Tensor> {
        let mut v = Vec::new();
        let mut at = 0;
        for (name, o, i) in self.layers() {
            v.push(Tensor::f32(
                format!("{name}.weight"),
                vec![o, i],
                self.params[at..at + o * i].to_vec(),
            ));
            at += o * i;
            v.push(Tensor::f32(
                format!("{name}.bias"),
                vec![o],
                self.params[at..at + o].to_vec(),
            ));
            at += o;
        }
        v
    }
    fn set_tensors(&mut self, tensors: &[Tensor]) -> Result<(), TrainError> {
        let mut params = Vec::with_capacity(self.params.len());
        let expected = self.to_tensors();
        for e in &expected {
            match tensors.iter().find(|t| t.name == e.name) {
                Some(Tensor {
                    shape,
                    data: TensorData::F32(v),
                    ..
                }) if *shape == e.shape => params.extend_from_slice(v),
                _ => {
                    return Err(TrainError::UnknownName {
                        what: "tensor",
                        name: e.name.clone(),
                        expected: format!("an F32 tensor of shape {:?}", e.shape),
                    });
                }
            }
        }
        if tensors.len() != expected.len() {
            return Err(TrainError::UnknownName {
                what: "tensor count",
                name: tensors.len().to_string(),
                expected: expected.len().to_string(),
            });
        }
        self.params = params;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let target = Dataset::parse("moons", None)?;
    let source = Dataset::parse("gaussian", Some(2))?;
    let matcher = MatcherSpec::parse("otcfm", Some(0.1), None, None)?;
    let steps = 1000;
    let params = TrainParams::default()
        .steps(steps)
        .batch(256)
        .ema(Some(0.99))
        .checkpoint_every(Some(250))
        .seed(0)
        .check()?;
    let checkpoint = std::env::temp_dir().join("custom_network.ckpt");
    // `Trainer::new` takes an MLP architecture for `run`; `run_with` trains the network it is given.
    let trainer = |resume| -> anyhow::Result<Trainer> {
        Ok(Trainer::new(
            source.clone(),
            target.clone(),
            matcher.clone(),
            Objective::Flow,
            Default::default(),
            params.clone(),
        )?
        .checkpoint_path(&checkpoint)
        .resume(resume))
    };
    let net = ResMlp::new(2, 64, 2, &mut seeded(0));
    println!("{}: {} parameters", net.architecture(), net.params().len());

    // Stop halfway (as Ctrl-C would through the stop flag), then resume from the checkpoint.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let first = trainer(false)?
        .stop_flag(stop)
        .run_with(net.clone(), &mut |p| {
            if p.step % 250 == 0 {
                println!("step {:>5}  loss {:.4}", p.step, p.loss);
            }
            if p.step == steps / 2 {
                flag.store(true, Ordering::SeqCst);
            }
        })?;
    println!(
        "stopped at step {}; checkpoint at step {}",
        first.model.steps_done,
        Checkpoint::load(&checkpoint)?.step()
    );
    let out = trainer(true)?.run_with(net.clone(), &mut |p| {
        if p.step % 250 == 0 {
            println!("step {:>5}  loss {:.4}", p.step, p.loss);
        }
    })?;
    println!(
        "resumed at step {}, trained to step {} ({:.2} s this run)",
        out.start_step, out.model.steps_done, out.wall_seconds
    );

    // The EMA network as a vector field: 2,000 samples with 50 RK4 steps, W2 against fresh data.
    let x_0 = source.sample(2000, &mut seeded(1))?;
    let fresh = target.sample(2000, &mut seeded(2))?;
    let field = out.model.field(true)?;
    let solution = Integrator::new(Rk4::default())
        .span(0.0, 1.0)
        .steps(50)
        .run(&*field, x_0.view())?;
    println!(
        "W2(samples, moons) = {:.4}",
        w2(solution.x.view(), fresh.view())?
    );
    println!(
        "W2(N(0, I), moons) = {:.4}  (before training)",
        w2(x_0.view(), fresh.view())?
    );

    // The model file: named tensors (PyTorch-style names) plus the EMA copy, loaded back into a
    // freshly initialised network of the same architecture.
    let path = std::env::temp_dir().join("custom_network.safetensors");
    out.model.save(&path)?;
    let back = TrainedNet::load(&path, ResMlp::new(2, 64, 2, &mut seeded(9)))?;
    assert_eq!(
        back.network(true).params(),
        out.model.network(true).params()
    );
    println!(
        "model written to {} ({} tensors) and read back",
        path.display(),
        back.net.to_tensors().len() * 2
    );
    Ok(())
}
