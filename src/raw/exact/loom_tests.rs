//! Loom models of the exact index (run by `.ci/loom.sh`).

use super::item::Item;
use super::*;

/// The hash of key `key` with home bucket `home`: the key is the signature.
fn hash(key: u64, home: u64) -> u64 {
    key << 52 | home
}

fn insert(index: &ExactIndex<Item>, key: u64, home: u64, guard: &Guard) {
    let hash = hash(key, home);
    assert!(index
        .insert(hash, Arc::new(Item { key, hash }), guard)
        .is_ok());
}

fn remove(index: &ExactIndex<Item>, key: u64, home: u64, guard: &Guard) {
    assert!(index.remove_deferred(hash(key, home), guard, |item| item.key == key));
}

/// An index of `buckets` buckets holding `(key, home)` pairs `before`; a
/// writer thread runs `write` while the model's thread looks up each of
/// `present` (which the writer leaves in place) and must find them all.
fn race(
    buckets: usize,
    before: &'static [(u64, u64)],
    write: fn(&ExactIndex<Item>, &Guard),
    present: &'static [(u64, u64)],
) {
    loom::model(move || {
        let index = Arc::new(ExactIndex::<Item>::with_buckets(buckets));
        let guard = crossbeam_epoch::pin();
        for &(key, home) in before {
            insert(&index, key, home, &guard);
        }
        drop(guard);
        let writer = {
            let index = index.clone();
            loom::thread::spawn(move || write(&index, &crossbeam_epoch::pin()))
        };
        let guard = crossbeam_epoch::pin();
        for &(key, home) in present {
            let found = index.find(hash(key, home), &guard, |item| item.key == key);
            assert_eq!(found.map(|item| item.key), Some(key), "missed key {key}");
        }
        drop(guard);
        writer.join().unwrap();
    });
}

/// An insert into the same home: the entry already there stays visible,
/// and the new one, if seen, is whole.
#[test]
fn insert_vs_find() {
    race(
        2,
        &[(1, 0)],
        |index, guard| {
            insert(index, 2, 0, guard);
            let found = index.find(hash(2, 0), guard, |item| item.key == 2);
            assert_eq!(found.map(|item| item.hash), Some(hash(2, 0)));
        },
        &[(1, 0)],
    );
}

/// A removal from the same bucket, then the slot's reuse by another
/// entry: the entry that stays is always found.
#[test]
fn remove_vs_find() {
    race(
        2,
        &[(1, 0), (2, 0)],
        |index, guard| {
            remove(index, 2, 0, guard);
            insert(index, 3, 0, guard);
        },
        &[(1, 0)],
    );
}

/// Home bucket 0 is full and key 3 lives displaced in bucket 1. The
/// writer displaces another entry of the home, then empties a home slot
/// and removes the newcomer (the home's count goes up and down): key 3
/// and the home entry that stays are always found.
#[test]
fn displacement_vs_find() {
    race(
        4,
        &[(1, 0), (2, 0), (3, 0)],
        |index, guard| {
            insert(index, 4, 0, guard);
            remove(index, 1, 0, guard);
            remove(index, 4, 0, guard);
        },
        &[(3, 0), (2, 0)],
    );
}

/// The writer's insert pushes the index over its load: it allocates the
/// next array and migrates one home; its removal migrates the other and
/// completes the resize. Entries present throughout are always found,
/// whether the lookup starts in the old array, crosses over, or starts in
/// the new one.
#[test]
fn resize_migration_vs_find() {
    race(
        2,
        &[(1, 0), (2, 1)],
        |index, guard| {
            insert(index, 3, 0, guard);
            assert!(index.stats(guard).resizing && index.resizes() == 0);
            remove(index, 3, 0, guard);
            assert_eq!(index.resizes(), 1);
        },
        &[(1, 0), (2, 1)],
    );
}
