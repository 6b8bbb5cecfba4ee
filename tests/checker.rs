//! The integrity checker detects each class of damage injected on purpose
//! (docs/reliability.md, suite 2).

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
    // Every class but the stale checksum re-stamps the pages it edits: the
    // structural checks, not the checksums, must be what noticed them.
    for reason in &figures.reasons {
        let by_checksum = reason.contains("checksum");
        assert_eq!(by_checksum, reason.starts_with("StaleChecksum"), "{reason}");
    }
}

#[test]
fn the_report_lists_problems_with_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, corrupt::damaged_image(corrupt::Class::LeakedPage)).unwrap();
    // SAFETY: the test owns the file.
    let db = unsafe { larch::Options::new().page_size(512).open(&path) }.unwrap();
    let report = db.check_report().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.leaked_pages, 1);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].page, report.pages - 1);
    assert!(report.errors[0].to_string().contains("leaked"));
    assert!(report.entries > 0 && report.leaf_pages > 0 && report.free_pages > 0);
    let err = db.check().unwrap_err();
    assert!(matches!(err, larch::Error::Corrupted { page, .. } if page == report.pages - 1));

    // Two problems at once: a free-list entry replaced by a reachable page is
    // a page in use and free, and the page it replaced is now leaked.
    drop(db);
    std::fs::write(
        &path,
        corrupt::damaged_image(corrupt::Class::FreeAlsoReachable),
    )
    .unwrap();
    let db = unsafe { larch::Options::new().page_size(512).open(&path) }.unwrap();
    let report = db.check_report().unwrap();
    let reasons: Vec<&str> = report.errors.iter().map(|e| e.reason).collect();
    assert_eq!(report.leaked_pages, 1, "{reasons:?}");
    assert_eq!(
        reasons,
        [
            "free page also in use",
            "page neither in use nor free (leaked)"
        ]
    );
}
