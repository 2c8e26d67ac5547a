//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Flow matching from the command line: train a flow from a source to a target distribution,
/// sample it, evaluate it (W2, MMD, path energy), compute likelihoods and plot.
///
/// Start with `fm demo`: it trains OT-CFM from N(0, I) to the moons in a few seconds and writes
/// the model, samples and plots to ./fm-demo.
#[derive(Parser, Debug)]
#[command(name = "fm", version, about, long_about)]
pub struct Cli {
    /// Print the figures as one JSON object on the last line of stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Replace existing output files that fm does not recognise as its own (a model, checkpoint,
    /// points file or plot it wrote). Outputs that are inputs, or devices, are refused even so.
    #[arg(long, global = true)]
    pub force: bool,
    /// Memory limit that commands check their estimated needs against before allocating
    /// (e.g. 512M, 16G); default: $FM_MEMORY_LIMIT, else 80% of the physical memory.
    #[arg(long, global = true, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a flow (or score) model from a source to a target dataset.
    ///
    /// Ctrl-C (or SIGTERM) stops after the current step, writes the checkpoint (--checkpoint, default
    /// MODEL.ckpt) and the model so far, and exits with 130; to continue, run the same command with
    /// --resume added (--steps is the total: the same value finishes the run bit-identically, a larger
    /// one trains longer). A second Ctrl-C quits at once.
    Train(Box<TrainArgs>),
    /// Draw samples from a trained model by integrating its ODE from t = 0 to t = 1 (from the
    /// model's source, or from your own points with --x0).
    Sample(SampleArgs),
    /// Run data back to noise: integrate a flow-matching model's ODE from t = 1 to t = 0 (the
    /// inverse of `fm sample --x0`).
    Encode(crate::verbs::EncodeArgs),
    /// The velocity v(t, x) of a flow-matching model at the time --t and every row of --points.
    Field(crate::verbs::FieldArgs),
    /// Compare samples (from a file, or drawn from a model) with a target: W2, MMD, path energy.
    Eval(EvalArgs),
    /// Log-likelihood of data under a trained flow (instantaneous change of variables).
    Likelihood(LikelihoodArgs),
    /// Draw PNG plots: samples against a target, trajectories, the loss curve.
    Plot(PlotArgs),
    /// The main job in one command: OT-CFM from N(0, I) to moons, W2, timings, model, samples and plots.
    Demo(DemoArgs),
    /// List the built-in datasets with their parameters.
    Datasets,
    /// Simulation-based inference: `fm simulate` and `fm c2st`.
    #[command(flatten)]
    Sbi(crate::simulate::SbiCommand),
    /// PyTorch interop: `fm export` and `fm import` (TorchCFM's MLP state dict).
    #[command(flatten)]
    Interop(crate::interop::InteropCommand),
}

/// `fm train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model kind: fm (flow matching, the default), or a normalizing flow trained by maximum
    /// likelihood on --target from N(0, I): coupling (RealNVP), residual (i-ResNet), cnf-mle (FFJORD).
    #[arg(long, default_value = "fm", value_name = "KIND")]
    pub model: String,
    /// Normalizing flows: coupling layers or residual blocks (default 8 coupling, 4 residual).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub layers: Option<i64>,
    /// Residual flow: Hutchinson probes per row of the log-determinant estimator (default 1).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub probes: Option<i64>,
    /// Residual flow: log-determinant estimator, `roulette[:MIN,P]` (unbiased, default `roulette:2,0.5`)
    /// or `truncated:N` (the first N series terms).
    #[arg(long, value_name = "SPEC")]
    pub estimator: Option<String>,
    /// Residual flow: Lipschitz constant c < 1 of each block (default 0.9).
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub lipschitz: Option<f64>,
    /// CNF-MLE: the fixed-step Runge–Kutta method of the training solve: euler, midpoint, heun,
    /// ralston, ssprk3, rk4 (default rk4).
    #[arg(long, value_name = "NAME")]
    pub cnf_solver: Option<String>,
    /// CNF-MLE: steps of the solve recorded for training (default 8).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub solver_steps: Option<i64>,
    /// CNF-MLE: steps of the fixed-step solve for likelihoods and sampling with
    /// `--eval-solver fixed` (default 32; giving it alone implies `--eval-solver fixed`).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub eval_steps: Option<i64>,
    /// CNF-MLE: the solver of likelihoods and sampling: dopri5 (adaptive, exact divergence,
    /// the default) or fixed (the --cnf-solver method with --eval-steps steps).
    #[arg(long, value_name = "NAME")]
    pub eval_solver: Option<String>,
    /// CNF-MLE: relative tolerance of the dopri5 evaluation (default 1e-5).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// CNF-MLE: absolute tolerance of the dopri5 evaluation (default 1e-5).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// CNF-MLE: the divergence in training: `exact` (default) or `hutchinson[:K][,gaussian|rademacher]`
    /// (K probes per row, default 1, Rademacher by default), e.g. `hutchinson:2,gaussian`.
    #[arg(long, value_name = "SPEC")]
    pub divergence: Option<String>,
    /// Source dataset: a built-in name (`fm datasets`) or a .csv/.npy file; `gaussian` takes the target's dimension.
    #[arg(long, default_value = "gaussian", value_name = "SPEC")]
    pub source: String,
    /// Target dataset: a built-in name or a .csv/.npy file.
    #[arg(long, value_name = "SPEC")]
    pub target: String,
    /// Matcher: icfm, otcfm, fm, sbcfm, vp, affine.
    #[arg(long, default_value = "otcfm", value_name = "NAME")]
    pub matcher: String,
    /// σ of the path (σ_min for fm); default 0 (1e-4 for fm, 1 for sbcfm).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub sigma: Option<f64>,
    /// Scheduler of the affine matcher: condot, cosine, polynomial:N, vp, linear-vp.
    #[arg(long, value_name = "NAME")]
    pub scheduler: Option<String>,
    /// Coupling: independent, exact, sinkhorn, exact-with-replacement (TorchCFM's pairing: pairs
    /// drawn from the exact plan with replacement). Default: exact for otcfm/sbcfm, independent otherwise.
    #[arg(long, value_name = "NAME")]
    pub coupling: Option<String>,
    /// Objective: flow (flow matching) or score (denoising score matching; affine matcher, gaussian source).
    #[arg(long, default_value = "flow", value_name = "NAME")]
    pub objective: String,
    /// Optimizer steps.
    #[arg(
        long,
        default_value_t = 2000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub steps: i64,
    /// Batch size.
    #[arg(
        long,
        default_value_t = 256,
        value_name = "B",
        allow_negative_numbers = true
    )]
    pub batch: i64,
    /// Learning rate.
    #[arg(
        long,
        default_value_t = 1e-3,
        value_name = "LR",
        allow_negative_numbers = true
    )]
    pub lr: f64,
    /// Optimizer: adam or adamw.
    #[arg(long, default_value = "adam", value_name = "NAME")]
    pub optimizer: String,
    /// Weight decay (L2 for adam, decoupled for adamw).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "W",
        allow_negative_numbers = true
    )]
    pub weight_decay: f64,
    /// Clip gradients to this global norm.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub max_grad_norm: Option<f64>,
    /// Random seed (initialisation, data, times, noise, couplings).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Hidden layer widths, comma separated.
    #[arg(long, default_value = "64,64,64", value_name = "W,W,...")]
    pub hidden: String,
    /// Activation: selu, silu, relu, tanh, elu, softplus, gelu (exact, PyTorch's nn.GELU()) or
    /// gelu-tanh (nn.GELU(approximate="tanh")).
    #[arg(long, default_value = "selu", value_name = "NAME")]
    pub activation: String,
    /// Time input of the network: raw (t as a column, as TorchCFM) or fourier:K.
    #[arg(long, default_value = "raw", value_name = "SPEC")]
    pub time_features: String,
    /// Decay of the exponential moving average of the weights that sampling uses; 0 turns it off.
    #[arg(
        long,
        default_value_t = 0.99,
        value_name = "DECAY",
        allow_negative_numbers = true
    )]
    pub ema: f64,
    /// Where to write the model (.safetensors).
    #[arg(long, default_value = "model.safetensors", value_name = "MODEL")]
    pub out: PathBuf,
    /// Write a checkpoint every N steps (to MODEL.ckpt unless --checkpoint is given).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub checkpoint_every: Option<i64>,
    /// Checkpoint file (default: the model path with .ckpt appended).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Resume from the checkpoint (written by --checkpoint-every or by Ctrl-C) with the same flags;
    /// the result is bit-identical to an uninterrupted run.
    #[arg(long)]
    pub resume: bool,
    /// Record the loss every N steps (the loss curve).
    #[arg(
        long,
        default_value_t = 10,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub log_every: i64,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// When stderr is not a terminal: seconds between plain progress lines (default:
    /// $FM_PROGRESS_EVERY, else 10; 0 prints every step).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub progress_every: Option<f64>,
    /// Conditional training (p(x | c)).
    #[command(flatten)]
    pub cond: crate::conditional::TrainContextArgs,
}

/// ODE solver settings shared by sample, eval and likelihood.
#[derive(Args, Debug, Clone)]
pub struct SolverArgs {
    /// ODE solver (the list comes from fm-ode's SOLVER_NAMES).
    #[arg(long, default_value = "euler", value_name = "NAME", help = crate::verbs::solver_help())]
    pub solver: String,
    /// Fixed steps for the fixed-step solvers (default 100).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub steps: Option<i64>,
    /// Relative tolerance of an adaptive solver (dopri5; default 1e-5).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// Absolute tolerance of an adaptive solver (dopri5; default 1e-5).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// Maximum number of steps an adaptive solver may take before giving up.
    #[arg(
        long,
        default_value_t = 100_000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub max_steps: i64,
}

/// `fm sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// The model file written by `fm train`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// Number of samples.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n: i64,
    /// Solver settings.
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Random seed of the source draw.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Output file (.csv or .npy).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the trajectory at 21 evenly spaced times: a .npy file of shape (T, n, d)
    /// (TorchCFM's layout), or CSV rows (t, x_1..x_d).
    #[arg(long, value_name = "FILE")]
    pub trajectory: Option<PathBuf>,
    /// Start points and source.
    #[command(flatten)]
    pub start: crate::verbs::SampleExtra,
    /// Sample with the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
    /// The context of a conditional model.
    #[command(flatten)]
    pub ctx: crate::conditional::QueryContextArgs,
    /// Keep only samples inside the support of this `fm simulate` task's prior
    /// (gaussian_linear, gaussian_mixture, two_moons, slcp), drawing further rounds until
    /// --n are accepted, as sbi does for its posteriors. Conditional models only.
    #[arg(long, value_name = "TASK", conflicts_with = "trajectory")]
    pub prior_task: Option<String>,
}

/// `fm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Samples to evaluate (.csv or .npy); or give --model.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "model",
        required_unless_present = "model"
    )]
    pub samples: Option<PathBuf>,
    /// A model to sample from first (also reports path energy, NPE and function evaluations).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// The target: a built-in name or a .csv/.npy file.
    #[arg(long, value_name = "SPEC")]
    pub target: String,
    /// Number of points compared (samples are subsampled or drawn to this size).
    #[arg(
        long,
        default_value_t = 2000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n: i64,
    /// Random seed (target draw, source draw).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Solver settings (with --model).
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Use the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
}

/// `fm likelihood`.
#[derive(Args, Debug)]
pub struct LikelihoodArgs {
    /// The model file written by `fm train`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// Data: a built-in name or a .csv/.npy file.
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Points: drawn from a built-in dataset, or a seeded subsample of a file's rows (a file with
    /// at most N rows is used whole).
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n: i64,
    /// Exact divergence (the default).
    #[arg(long, conflicts_with = "hutchinson")]
    pub exact: bool,
    /// Hutchinson divergence estimate with K Rademacher probes.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub hutchinson: Option<i64>,
    /// ODE solver (dopri5, adaptive, is the default here).
    #[arg(long, default_value = "dopri5", value_name = "NAME", help = crate::verbs::solver_help())]
    pub solver: String,
    /// Fixed steps (fixed-step solvers: default 100; with dopri5 turns off adaptivity).
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub steps: Option<i64>,
    /// Relative tolerance of dopri5 (default 1e-5).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// Absolute tolerance of dopri5 (default 1e-5).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// Random seed (data draw, probes).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Write the per-point log-likelihoods (.csv or .npy).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Use the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
    /// The context of a conditional model.
    #[command(flatten)]
    pub ctx: crate::conditional::QueryContextArgs,
    /// Context columns of --data.
    #[command(flatten)]
    pub cols: crate::conditional::DataColumnsArgs,
}

/// `fm plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// What to plot.
    #[command(subcommand)]
    pub kind: PlotKind,
}

/// The kinds of plot.
#[derive(Subcommand, Debug)]
pub enum PlotKind {
    /// Samples (a file, or drawn from a model) against a target.
    Samples {
        /// Samples (.csv or .npy).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "model",
            required_unless_present = "model"
        )]
        samples: Option<PathBuf>,
        /// Draw the samples from this model instead.
        #[arg(long, value_name = "MODEL")]
        model: Option<PathBuf>,
        /// Target to draw underneath: a built-in name or a file.
        #[arg(long, value_name = "SPEC")]
        target: Option<String>,
        /// Points drawn (from the model and a built-in target).
        #[arg(
            long,
            default_value_t = 2000,
            value_name = "N",
            allow_negative_numbers = true
        )]
        n: i64,
        /// Random seed.
        #[arg(long, default_value_t = 0, value_name = "S")]
        seed: u64,
        /// Output PNG.
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
    },
    /// Trajectories from source to target (from a trajectory file or integrated from a model).
    Trajectories {
        /// A trajectory file written by `fm sample --trajectory`.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "model",
            required_unless_present = "model"
        )]
        trajectory: Option<PathBuf>,
        /// Integrate trajectories of this model instead.
        #[arg(long, value_name = "MODEL")]
        model: Option<PathBuf>,
        /// Target to draw underneath.
        #[arg(long, value_name = "SPEC")]
        target: Option<String>,
        /// Number of trajectories (with --model).
        #[arg(
            long,
            default_value_t = 300,
            value_name = "N",
            allow_negative_numbers = true
        )]
        n: i64,
        /// Random seed.
        #[arg(long, default_value_t = 0, value_name = "S")]
        seed: u64,
        /// Output PNG.
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
    },
    /// The log-density of a 2-D model (any kind) on a regular grid, as a heat map.
    ///
    /// Normalizing flows use their own log-density (a CNF-MLE its evaluation solver);
    /// flow-matching models the instantaneous change of variables (dopri5, exact divergence, as
    /// `fm likelihood`). Models of other dimensions are refused (no slicing).
    Density {
        /// The model file.
        #[arg(long, value_name = "MODEL")]
        model: PathBuf,
        /// The window: LO,HI (both axes) or X0,X1,Y0,Y1; default: the 1 %–99 % quantiles of
        /// 2,000 model samples widened by 30 % on every side.
        #[arg(long, value_name = "LO,HI", allow_hyphen_values = true)]
        range: Option<String>,
        /// Grid cells per axis.
        #[arg(
            long,
            default_value_t = 100,
            value_name = "N",
            allow_negative_numbers = true
        )]
        grid: i64,
        /// Random seed (the samples that choose the default window).
        #[arg(long, default_value_t = 0, value_name = "S")]
        seed: u64,
        /// Relative tolerance of the dopri5 solve (flow-matching and CNF-MLE models; default 1e-5).
        #[arg(long, value_name = "R", allow_negative_numbers = true)]
        rtol: Option<f64>,
        /// Absolute tolerance of the dopri5 solve (flow-matching and CNF-MLE models; default 1e-5).
        #[arg(long, value_name = "A", allow_negative_numbers = true)]
        atol: Option<f64>,
        /// Also write the grid's rows (x0, x1, log p) to this .csv or .npy file.
        #[arg(long, value_name = "FILE")]
        values: Option<PathBuf>,
        /// Output PNG (800×800).
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
    },
    /// The training loss curve stored in a model file.
    Loss {
        /// The model file.
        #[arg(long, value_name = "MODEL")]
        model: PathBuf,
        /// Output PNG.
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
    },
}

/// `fm demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output directory (created if missing).
    #[arg(long, default_value = "fm-demo", value_name = "DIR")]
    pub out: PathBuf,
    /// Training steps.
    #[arg(
        long,
        default_value_t = 2000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub steps: i64,
    /// Random seed.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
}
