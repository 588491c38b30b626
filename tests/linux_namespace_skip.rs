//! The rule for live tests that cannot create their network namespace
//! (`linux_kernel::skip`): one line that says what was skipped and why, or a
//! failure when `CI=true`. The last test takes the path for real, from a
//! thread that has given up the privilege to create a namespace.

mod linux_kernel;

use std::thread;

use linux_kernel::skip::{ci_requires_kernel, decide, settle, Missing};
use linux_kernel::Netns;

const REASON: &str = "cannot create a network namespace (unshare(CLONE_NEWNET)): \
                      Operation not permitted (os error 1)";

#[test]
fn only_ci_true_turns_a_skip_into_a_failure() {
    let cases = [
        (None, false),
        (Some(""), false),
        (Some("false"), false),
        (Some("0"), false),
        (Some("yes"), false),
        (Some("true"), true),
        (Some("TRUE"), true),
        (Some(" true\n"), true),
    ];
    for (ci, fails) in cases {
        assert_eq!(ci_requires_kernel(ci), fails, "CI={ci:?}");
        let decision = decide("some_live_test", REASON, ci);
        assert_eq!(
            matches!(decision, Missing::Fail(_)),
            fails,
            "CI={ci:?}: {decision:?}"
        );
    }
}

#[test]
fn a_skip_is_one_line_naming_the_test_and_the_reason() {
    let Missing::Skip(line) = decide("linux_some_scenario", REASON, None) else {
        panic!("no CI: the test is skipped");
    };
    assert!(line.starts_with("SKIPPED linux_some_scenario: "), "{line}");
    assert!(line.contains(REASON), "{line}");
    assert!(line.contains("CI=true"), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[test]
fn a_failure_under_ci_names_the_test_and_the_reason() {
    let Missing::Fail(message) = decide("linux_some_scenario", REASON, Some("true")) else {
        panic!("CI=true: the test fails");
    };
    assert!(message.starts_with("linux_some_scenario: "), "{message}");
    assert!(message.contains(REASON), "{message}");
}

/// Gives up root in the calling thread only (the raw system call; the C
/// library's `setresuid` would change every thread). Its effective
/// capabilities go with it, CAP_SYS_ADMIN included.
fn drop_privileges() {
    let nobody: libc::c_long = 65534;
    // SAFETY: `setresuid` takes integers and changes only the calling
    // thread's user ids; the thread ends when its test step does.
    unsafe {
        libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody);
    }
}

/// In a thread without privilege, with `CI` set to `ci`: whether the
/// namespace could not be created, and then what `settle` did (`Ok(true)`: it
/// skipped; `Err`: it panicked with that message).
fn unprivileged_attempt(ci: Option<&'static str>) -> Result<bool, String> {
    let attempt = thread::Builder::new()
        .name("unprivileged_attempt".into())
        .spawn(move || {
            drop_privileges();
            let entered = Netns::enter();
            assert!(
                entered.is_err(),
                "a thread without privilege created a network namespace"
            );
            settle(entered, ci).is_none()
        })
        .expect("spawn");
    attempt.join().map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

#[test]
fn a_namespace_that_cannot_be_created_skips_or_fails_under_ci() {
    assert_eq!(unprivileged_attempt(None), Ok(true), "without CI: skipped");
    assert_eq!(
        unprivileged_attempt(Some("false")),
        Ok(true),
        "CI=false: skipped"
    );
    let failure = unprivileged_attempt(Some("true")).expect_err("CI=true: a failure");
    assert!(
        failure.starts_with("unprivileged_attempt: no network namespace"),
        "{failure}"
    );
    assert!(failure.contains("unshare(CLONE_NEWNET)"), "{failure}");
}
