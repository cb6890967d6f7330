//! What every lab's test file shares: one `#[test]` per check, grading the subject named by
//! `PROXYLAB_SUBJECT` (a command with `{port}`), or the reference proxy.

/// Runs check `id` of lab `number` and fails the test with the report's explanation.
pub fn grade(number: u8, id: &str) {
    let lab = labs::lab(number).unwrap();
    let check = lab
        .check(id)
        .unwrap_or_else(|| panic!("lab {number} has no check {id}"));
    let subject = labs::subject_from_env(&lab);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(labs::run_check(
        &lab,
        check,
        &subject,
        &labs::Options::default(),
    ));
    assert!(
        outcome.passed(),
        "lab {number} {id} ({} points): {}\n  what happened: {}\n  hint: {}\n  reproduce: {}",
        outcome.max,
        outcome.proves,
        outcome.failure.unwrap_or_default(),
        outcome.hint.unwrap_or_default(),
        outcome.reproduce.unwrap_or_default()
    );
}

/// The ids of a lab's checks, for the test that every check has a test.
pub fn ids(number: u8) -> Vec<&'static str> {
    labs::lab(number)
        .unwrap()
        .checks
        .iter()
        .map(|c| c.id)
        .collect()
}

/// One `#[test]` per check, and a test that none is missing.
#[macro_export]
macro_rules! check_tests {
    ($lab:expr; $($test:ident => $id:expr),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                common::grade($lab, $id);
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            let tested: Vec<&str> = vec![$($id),*];
            assert_eq!(tested, common::ids($lab));
        }
    };
}
