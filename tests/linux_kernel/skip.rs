//! What a live test does when it cannot have its network namespace.
//!
//! Without a namespace (no privilege, no Linux) a live test cannot compare
//! anything. It must not pass as if it had: it prints one line that names the
//! test and the reason, straight to the process's stderr so that the test
//! harness's output capture does not hide it, and returns without checking.
//! When the environment says `CI=true`, the same situation is a failure: a CI
//! run is meant to exercise the kernel, and a skip there would hide that it
//! did not.

use std::io::Write;

use super::Netns;

/// The environment variable that turns a skip into a failure.
pub const CI_VAR: &str = "CI";

/// The decision for a test that has no namespace.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// Print this line and return without checking.
    Skip(String),
    /// Fail the test with this message.
    Fail(String),
}

/// Whether the value of `CI` asks for live tests to fail rather than skip:
/// `true`, in any case, surrounding blanks ignored.
pub fn ci_requires_kernel(ci: Option<&str>) -> bool {
    ci.is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// The decision for `test`, which could not create its namespace for
/// `reason`, given the value of `CI`.
pub fn decide(test: &str, reason: &str, ci: Option<&str>) -> Missing {
    if ci_requires_kernel(ci) {
        Missing::Fail(format!(
            "{test}: no network namespace, and {CI_VAR}=true forbids skipping: {reason}"
        ))
    } else {
        Missing::Skip(format!(
            "SKIPPED {test}: no network namespace, nothing was checked: {reason} \
             (with {CI_VAR}=true this fails)"
        ))
    }
}

/// The name of the running test: the test harness names each test's thread
/// after it.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Carries out the decision for `entered`, the result of [`Netns::enter`]:
/// the namespace if there is one; otherwise prints the skip line and gives
/// `None`, or panics when `ci` asks for it.
pub fn settle(entered: Result<Netns, String>, ci: Option<&str>) -> Option<Netns> {
    let reason = match entered {
        Ok(ns) => return Some(ns),
        Err(reason) => reason,
    };
    match decide(&current_test(), &reason, ci) {
        Missing::Skip(line) => {
            // Not `eprintln!`: the harness would capture it, and a passing
            // test's output is never shown.
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
        Missing::Fail(message) => panic!("{message}"),
    }
}

impl Netns {
    /// [`Netns::enter`] for a live test: `None` after printing a line that
    /// says what was skipped and why, or a panic if `CI=true`.
    pub fn enter_or_skip() -> Option<Netns> {
        let ci = std::env::var(CI_VAR).ok();
        settle(Netns::enter(), ci.as_deref())
    }
}
