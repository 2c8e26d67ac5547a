//! Adam/AdamW first steps against values computed by hand from the published update rules
//! (Kingma & Ba, 2015, Algorithm 1; Loshchilov & Hutter, 2019, Algorithm 2), clipping, EMA.
use fm_autograd::{Adam, AdamConfig, Ema, Mlp, MlpConfig};
use rand::SeedableRng;

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn adam_first_two_steps_match_the_update_rule() {
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let mut p = [1.0_f32, -2.0, 0.5];
    // Step 1: m̂ = g, v̂ = g², so θ moves by −lr·g/(|g| + eps) ≈ −lr·sign(g).
    adam.update(&mut p, &[0.3, -1.2, 2.0]).unwrap();
    assert_close(&p, &[0.999, -1.999, 0.499], 1e-6);
    // Step 2 (entry 0 by hand): m̂ = (0.09·0.3 + 0.1·(−0.1))/0.19 = 0.0894737,
    // v̂ = (0.000999·0.09 + 0.001·0.01)/0.001999 = 0.0499800, Δ = −1e-3·0.0894737/0.2235621.
    adam.update(&mut p, &[-0.1, 0.4, 2.0]).unwrap();
    assert_close(&p, &[0.998_599_781_5, -1.998_599_781_4, 0.498], 1e-6);
    assert_eq!(adam.steps(), 2);
}

#[test]
fn adamw_decays_weights_before_the_adam_step() {
    let cfg = AdamConfig {
        lr: 0.1,
        ..AdamConfig::adamw()
    };
    assert_eq!((cfg.weight_decay, cfg.decoupled), (1e-2, true));
    let mut adam = Adam::new(cfg).unwrap();
    let mut p = [2.0_f32, -4.0];
    adam.update(&mut p, &[0.5, 0.5]).unwrap();
    // θ(1 − lr·λ) − lr·sign(g): 2·0.999 − 0.1, −4·0.999 − 0.1.
    assert_close(&p, &[1.898, -4.096], 1e-6);
}

#[test]
fn adam_l2_decay_adds_to_the_gradient() {
    let mut adam = Adam::new(AdamConfig {
        lr: 0.1,
        weight_decay: 1.0,
        ..AdamConfig::default()
    })
    .unwrap();
    let mut p = [2.0_f32, -4.0];
    // g + λθ = [0.5 + 2, 0.5 − 4] → signs (+, −): θ − lr·sign.
    adam.update(&mut p, &[0.5, 0.5]).unwrap();
    assert_close(&p, &[1.9, -3.9], 1e-6);
}

#[test]
fn gradient_clipping_rescales_to_the_max_norm() {
    // eps = 1 makes the first step depend on |g|: Δ = −lr·g/(|g| + 1). g = (3, 4), ‖g‖ = 5,
    // clipped to norm 1: (0.6, 0.8) → Δ = −(0.6/1.6, 0.8/1.8).
    let cfg = AdamConfig {
        lr: 1.0,
        eps: 1.0,
        max_grad_norm: Some(1.0),
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(cfg).unwrap();
    let mut p = [0.0_f32, 0.0];
    adam.update(&mut p, &[3.0, 4.0]).unwrap();
    assert_close(&p, &[-0.375, -0.8 / 1.8], 1e-5);
    // Below the threshold nothing changes: g = (0.3, 0.4) gives −(0.3/1.3, 0.4/1.4).
    let mut adam = Adam::new(cfg).unwrap();
    let mut p = [0.0_f32, 0.0];
    adam.update(&mut p, &[0.3, 0.4]).unwrap();
    assert_close(&p, &[-0.3 / 1.3, -0.4 / 1.4], 1e-5);
}

#[test]
fn invalid_settings_and_lengths_are_errors() {
    assert!(
        Adam::new(AdamConfig {
            lr: 0.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Adam::new(AdamConfig {
            beta1: 1.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Adam::new(AdamConfig {
            beta2: -0.1,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Adam::new(AdamConfig {
            max_grad_norm: Some(0.0),
            ..Default::default()
        })
        .is_err()
    );
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    assert!(adam.update(&mut [0.0; 3], &[0.0; 2]).is_err());
    adam.update(&mut [0.0; 3], &[1.0; 3]).unwrap();
    assert!(adam.update(&mut [0.0; 4], &[1.0; 4]).is_err());
}

#[test]
fn ema_follows_the_closed_form() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let a = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let b = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let mut ema = Ema::new(0.9, &a).unwrap();
    for _ in 0..3 {
        ema.update(&b).unwrap();
    }
    // After k updates towards a constant θ_b: 0.9^k θ_a + (1 − 0.9^k) θ_b.
    let w = 0.9_f64.powi(3);
    for ((e, pa), pb) in ema
        .weights()
        .params()
        .iter()
        .zip(a.params())
        .zip(b.params())
    {
        let want = w * *pa as f64 + (1.0 - w) * *pb as f64;
        assert!((*e as f64 - want).abs() < 1e-6);
    }
    assert_eq!(ema.updates(), 3);
    assert!(Ema::new(1.0, &a).is_err());
    let other = Mlp::new(
        &MlpConfig {
            hidden: vec![8],
            ..Default::default()
        },
        &mut rng,
    )
    .unwrap();
    assert!(ema.update(&other).is_err());
}

/// A restored optimizer whose second moments are shorter than the parameters (a damaged
/// checkpoint) is an error, not a silent partial update.
#[test]
fn adam_state_with_short_second_moments_is_an_error() {
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let mut p = [1.0_f32, -2.0, 0.5];
    adam.update(&mut p, &[0.3, -1.2, 2.0]).unwrap();
    let mut state: serde_json::Value = serde_json::to_value(&adam).unwrap();
    state["v"].as_array_mut().unwrap().pop();
    let mut damaged: Adam = serde_json::from_value(state).unwrap();
    let before = p;
    let err = damaged.update(&mut p, &[0.1, 0.1, 0.1]).unwrap_err();
    assert!(err.to_string().contains("second moments"), "{err}");
    assert_eq!(p, before, "a refused update must not touch the parameters");
}
