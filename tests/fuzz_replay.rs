//! Stable replay of the fuzz interpreter: a few thousand seeded inputs, plus
//! every committed corpus and artifact file of `fuzz/`, run through the same
//! lock-step comparison of the table with the reference model.

use std::path::Path;

use pcbhash_model::{run_bytes, seeded};

const SEED: u64 = 0x0005_fcb0_f022;
const CASES: u64 = 3000;

#[test]
fn seeded_inputs_agree_with_the_model() {
    let mut failures = Vec::new();
    for case in 0..CASES {
        let data = seeded::input(SEED, case);
        if let Err(d) = run_bytes(&data) {
            failures.push(format!("case {case}: {d}"));
        }
    }
    if let Ok(limit) = std::env::var("PCBHASH_SHOW") {
        for f in failures.iter().take(limit.parse().unwrap_or(5)) {
            eprintln!("{f}\n");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} diverged; first: {}",
        failures.len(),
        failures[0]
    );
}

/// Every file under `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`
/// for the targets that take an operation list (`ops` and `lookup`).
#[test]
fn committed_corpus_and_artifacts_agree_with_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for kind in ["corpus", "artifacts"] {
        for target in ["ops", "lookup", "concurrent"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable directory entry").path();
                if !path.is_file() {
                    continue;
                }
                let data = std::fs::read(&path).expect("a readable corpus file");
                let result: Result<(), String> = match target {
                    "lookup" => pcbhash_model::run_lookup_bytes(&data).map_err(|d| d.to_string()),
                    "concurrent" => pcbhash_model::concurrent::run_bytes(&data),
                    _ => run_bytes(&data).map_err(|d| d.to_string()),
                };
                if let Err(d) = result {
                    panic!("{}: {d}", path.display());
                }
                ran += 1;
            }
        }
    }
    assert!(
        ran > 0,
        "no committed corpus file was found under {}",
        root.display()
    );
}

/// `PCBHASH_CASE=n cargo test --test fuzz_replay show_case -- --nocapture`
/// prints the operations of seeded case `n` (a debugging aid).
#[test]
fn show_case() {
    let data = if let Ok(path) = std::env::var("PCBHASH_FILE") {
        std::fs::read(path).expect("a readable input")
    } else if let Ok(case) = std::env::var("PCBHASH_CASE") {
        seeded::input(SEED, case.parse().expect("a case number"))
    } else {
        return;
    };
    let lookup = std::env::var("PCBHASH_FILE").is_ok_and(|p| p.contains("lookup"));
    let s = if lookup {
        pcbhash_model::LookupCase::decode(&data)
            .expect("a case")
            .scenario()
    } else {
        pcbhash_model::Scenario::decode(&data, 96).expect("a scenario")
    };
    eprintln!("{:?} {:?}", s.policy, s.protocol);
    for (i, op) in s.ops.iter().enumerate() {
        eprintln!("{i}: {op:?}");
    }
    eprintln!("{:?}", pcbhash_model::run(&s).err().map(|d| d.to_string()));
    if let Ok(path) = std::env::var("PCBHASH_DUMP") {
        std::fs::write(path, &data).expect("a writable path");
    }
}
