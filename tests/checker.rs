//! The integrity checker detects each class of damage injected on purpose
//! (RELIABILITY.md, suite 2).

use larch::testing::corrupt;

#[test]
fn every_class_of_damage_is_detected() {
    let (figures, missed) = corrupt::run();
    for reason in &figures.reasons {
        eprintln!("{reason}");
    }
    larch::testing::report(&figures.to_string());
    assert_eq!(figures.classes_injected, corrupt::CLASSES.len() as u64);
    assert!(missed.is_empty(), "{figures}: missed {missed:?}");
}
