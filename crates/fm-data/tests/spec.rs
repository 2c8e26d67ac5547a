//! The spec syntax `name:key=value,...`: names, keys, values, errors and round trips.

use fm_data::{Affine, DataError, Dataset, MoonsStyle, Toy, builtin_names};
use proptest::prelude::*;

#[test]
fn paper_variants_are_reachable_by_parameters_too() {
    let cases = [
        ("8gaussians:std=1", "8gaussians-torchdyn"),
        ("8gaussians:radius=4,std=0.5,scale=3", "8gaussians-dsb"),
        (
            "moons:style=sklearn,noise=0.05,scale=2,shift_x=-1,shift_y=0",
            "moons-sklearn",
        ),
        ("scurve:noise=0.1,standardize=true,scale=7", "scurve-dsb"),
        ("circles:noise=0,scale=10", "circles-dsb"),
    ];
    for (spec, name) in cases {
        let toy = Toy::parse(spec, None).unwrap();
        assert_eq!(toy, Toy::named(name).unwrap(), "{spec}");
        assert_eq!(toy.name(), name);
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    assert_eq!(
        Toy::named("8gaussians").unwrap(),
        Toy::EightGaussians {
            radius: 5.0,
            std: 0.1f64.powf(0.25),
            affine: Affine::scaled(1.0)
        }
    );
    assert_eq!(
        Toy::named("moons").unwrap(),
        Toy::Moons {
            style: MoonsStyle::Torchdyn,
            noise: 0.2,
            affine: Affine {
                standardize: false,
                scale: 3.0,
                shift: [-1.0, -1.0]
            }
        }
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let e = Dataset::parse("moon", None).unwrap_err();
    assert!(matches!(e, DataError::UnknownDataset { .. }), "{e}");
    assert!(e.to_string().contains("8gaussians"), "{e}");
    let e = Toy::parse("moons:colour=red", None).unwrap_err();
    assert!(
        matches!(&e, DataError::UnknownKey { key, known, .. } if key == "colour" && known.contains("noise")),
        "{e}"
    );
    let e = Toy::parse("checkerboard:noise=0.1", None).unwrap_err();
    assert!(matches!(e, DataError::UnknownKey { .. }), "{e}");
    for bad in [
        "moons:noise=abc",
        "moons:noise=-1",
        "moons:noise=nan",
        "moons:style=pytorch",
        "circles:factor=1.5",
        "gaussian:dim=0",
        "gaussian:dim=2.5",
        "pinwheel:arms=0",
        "spirals:max_angle=0",
        "moons:standardize=maybe",
        "moons:scale=inf",
    ] {
        let e = Toy::parse(bad, None).unwrap_err();
        assert!(matches!(e, DataError::InvalidValue { .. }), "{bad}: {e}");
    }
    for bad in [
        "moons:noise",
        "moons:",
        "moons:noise=0.1,noise=0.2",
        "moons:,",
    ] {
        let e = Toy::parse(bad, None).unwrap_err();
        assert!(matches!(e, DataError::BadSpec { .. }), "{bad}: {e}");
    }
    let e = Dataset::parse("moons", Some(3)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DimMismatch {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = Dataset::parse("gaussian:dim=3", Some(2)).unwrap_err();
    assert!(matches!(e, DataError::DimMismatch { .. }), "{e}");
    // A directly built toy is checked when sampled.
    let toy = Toy::Circles {
        factor: 2.0,
        noise: 0.0,
        affine: Affine::default(),
    };
    assert!(toy.sample(4, &mut fm_core::rng::seeded(0)).is_err());
}

#[test]
fn gaussian_dimension_from_hint_or_key() {
    assert_eq!(Dataset::parse("gaussian", None).unwrap().dim(), 2);
    assert_eq!(Dataset::parse("gaussian", Some(6)).unwrap().dim(), 6);
    let g = Dataset::parse("gaussian:dim=4", None).unwrap();
    assert_eq!((g.dim(), g.name()), (4, "gaussian:dim=4".to_string()));
}

#[test]
fn every_builtin_parses_and_names_itself() {
    for name in builtin_names() {
        let ds = Dataset::parse(name, None).unwrap();
        assert_eq!(&ds.name(), name);
        assert_eq!(Dataset::parse(&ds.name(), None).unwrap(), ds);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// name() is a spec that parse() turns back into the same toy, for random parameters.
    #[test]
    fn name_round_trips(
        base in proptest::sample::select(builtin_names().to_vec()),
        noise in 0.0f64..3.0,
        scale in -10.0f64..10.0,
        shift in -5.0f64..5.0,
        standardize in any::<bool>(),
    ) {
        let mut toy = Toy::named(base).unwrap();
        let mut spec = format!("{base}:");
        let mut items = vec![];
        if toy.keys().contains(&"noise") { items.push(format!("noise={noise}")); }
        if toy.keys().contains(&"scale") {
            items.push(format!("scale={scale}"));
            items.push(format!("shift_y={shift}"));
            items.push(format!("standardize={standardize}"));
        } else {
            items.push(format!("mean={shift}"));
        }
        spec.push_str(&items.join(","));
        toy = Toy::parse(&spec, None).unwrap();
        let again = Toy::parse(&toy.name(), None).unwrap();
        prop_assert_eq!(&again, &toy);
        if let Some(a) = toy.affine() {
            prop_assert_eq!(a.scale, scale);
            prop_assert_eq!(a.shift[1], shift);
            prop_assert_eq!(a.standardize, standardize);
        }
    }
}
