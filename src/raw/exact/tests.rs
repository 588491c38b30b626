//! Unit tests of the exact index.

use super::item::Item;
use super::*;
use crate::raw::collect_until;

fn spread(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn item(key: u64, hash: u64) -> Arc<Item> {
    Arc::new(Item { key, hash })
}

fn insert(index: &ExactIndex<Item>, key: u64, hash: u64, guard: &Guard) {
    if let Err(error) = index.insert(hash, item(key, hash), guard) {
        panic!(
            "insert of {key} failed: {error:?} ({:?})",
            index.stats(guard)
        );
    }
}

fn found(index: &ExactIndex<Item>, key: u64, hash: u64, guard: &Guard) -> bool {
    index
        .find(hash, guard, |item| item.key == key)
        .map(|item| item.key)
        == Some(key)
}

#[test]
fn slot_words_round_trip_and_reject_high_addresses() {
    let value = item(1, 2);
    let bits = address_bits(Arc::as_ptr(&value)).expect("a heap address fits");
    let word = tag(0xABC, 3) << ADDRESS_BITS | bits;
    assert_eq!(address::<Item>(word), Arc::as_ptr(&value));
    assert_eq!(word >> 52, 0xABC);
    assert_eq!((word >> ADDRESS_BITS) & 0xF, 4);
    assert_eq!(address_bits((1u64 << 52) as usize as *const Item), None);
    assert_eq!(
        address_bits(((1u64 << 52) - 16) as usize as *const Item),
        Some((1 << 48) - 1)
    );
    assert_eq!(address_bits(std::ptr::null::<Item>()), None);
}

#[test]
fn insert_find_remove_through_resizes() {
    let index = ExactIndex::<Item>::with_buckets(1);
    let guard = crossbeam_epoch::pin();
    for k in 0..20_000u64 {
        insert(&index, k, spread(k), &guard);
    }
    assert_eq!(index.len(), 20_000);
    let grown = index.stats(&guard);
    assert!(index.resizes() >= 10, "{} resizes", index.resizes());
    assert!(grown.buckets >= 20_000 / MAX_LOAD, "{grown:?}");
    for k in 0..20_000u64 {
        assert!(found(&index, k, spread(k), &guard), "key {k}");
    }
    assert!(!found(&index, 20_000, spread(20_000), &guard));
    for k in (0..20_000u64).step_by(2) {
        assert!(
            index.remove_deferred(spread(k), &guard, |item| item.key == k),
            "key {k}"
        );
    }
    assert!(
        !index.remove_deferred(spread(0), &guard, |item| item.key == 0),
        "removed twice"
    );
    for k in 0..20_000u64 {
        assert_eq!(found(&index, k, spread(k), &guard), k % 2 == 1, "key {k}");
    }
    assert_eq!(index.len(), 10_000);
    // Down to a few entries: the index shrinks, migrating as it goes.
    for k in (1..19_990u64).step_by(2) {
        assert!(
            index.remove_deferred(spread(k), &guard, |item| item.key == k),
            "key {k}"
        );
    }
    for k in 30_000..30_500u64 {
        insert(&index, k, spread(k), &guard);
        assert!(index.remove_deferred(spread(k), &guard, |item| item.key == k));
    }
    let shrunk = index.stats(&guard);
    assert!(shrunk.buckets < grown.buckets, "{shrunk:?} after {grown:?}");
    for k in (19_991..20_000u64).step_by(2) {
        assert!(found(&index, k, spread(k), &guard), "key {k}");
    }
    assert_eq!(index.len(), 5);
}

#[test]
fn retired_arrays_wait_for_a_write_to_free_them() {
    let index = ExactIndex::<Item>::with_buckets(1);
    {
        let guard = crossbeam_epoch::pin();
        for k in 0..200 {
            insert(&index, k, spread(k), &guard);
        }
    }
    let resizes = index.resizes();
    assert!(resizes >= 3, "{resizes} resizes");
    // The epoch runs the deferred hand-overs on whichever thread collects;
    // none of them frees an array, they only keep it.
    assert!(collect_until(|| index.graveyard.kept() as u64 == resizes));
    assert_eq!(index.graveyard.kept() as u64, resizes);
    let guard = crossbeam_epoch::pin();
    for k in 0..200 {
        assert!(found(&index, k, spread(k), &guard), "{k}");
    }
    // A write frees them.
    insert(&index, 1000, spread(1000), &guard);
    assert_eq!(index.graveyard.kept(), 0);
    assert!(found(&index, 1000, spread(1000), &guard));
}

#[test]
fn with_capacity_holds_that_many_without_resizing() {
    let index = ExactIndex::<Item>::with_capacity(10_000);
    let guard = crossbeam_epoch::pin();
    for k in 0..10_000u64 {
        insert(&index, k, spread(k), &guard);
    }
    assert_eq!(index.resizes(), 0);
    let stats = index.stats(&guard);
    assert!(!stats.resizing);
    assert!(stats.displaced < 10_000 / 10, "{stats:?}");
    for k in 0..10_000u64 {
        // A hint: it changes nothing the lookup sees.
        index.prefetch(spread(k), &guard);
        assert!(found(&index, k, spread(k), &guard), "key {k}");
    }
}

#[test]
fn every_value_is_released_once() {
    let values: Vec<Arc<Item>> = (0..3000).map(|k| item(k, spread(k))).collect();
    {
        let index = ExactIndex::<Item>::with_buckets(1);
        let guard = crossbeam_epoch::pin();
        for value in &values {
            assert!(index.insert(value.hash, value.clone(), &guard).is_ok());
        }
        for k in (0..3000u64).step_by(3) {
            assert!(index.remove_deferred(spread(k), &guard, |item| item.key == k));
        }
        let held = index
            .find_arc(spread(1), &guard, |item| item.key == 1)
            .expect("key 1 is in the index");
        assert!(Arc::ptr_eq(&held, &values[1]));
        assert!(index.resizes() > 0);
    }
    assert!(collect_until(|| values
        .iter()
        .all(|value| Arc::strong_count(value) == 1)));
    for (k, value) in values.iter().enumerate() {
        assert_eq!(Arc::strong_count(value), 1, "value {k}");
    }
}

/// Hashes whose home is bucket 3 of 16 and whose signatures differ.
fn at_home_3(k: u64) -> u64 {
    k << 52 | 3
}

#[test]
fn full_home_displaces_into_the_next_buckets() {
    let index = ExactIndex::<Item>::with_buckets(16);
    let guard = crossbeam_epoch::pin();
    for k in 0..SLOTS as u64 {
        insert(&index, k, at_home_3(k), &guard);
    }
    assert_eq!(
        (index.stats(&guard).displaced, index.stats(&guard).reach),
        (0, 0)
    );
    // Two more spill into bucket 4, and one that lives at home in bucket 4
    // lands beside them.
    insert(&index, 100, at_home_3(100), &guard);
    insert(&index, 101, at_home_3(101), &guard);
    insert(&index, 200, 200 << 52 | 4, &guard);
    let stats = index.stats(&guard);
    assert_eq!((stats.displaced, stats.reach), (2, 1));
    for k in (0..SLOTS as u64).chain([100, 101]) {
        assert!(found(&index, k, at_home_3(k), &guard), "key {k}");
    }
    assert!(found(&index, 200, 200 << 52 | 4, &guard));
    // Bucket 4's own lookup does not see home 3's entries, even with
    // their signature.
    assert!(index.find(100 << 52 | 4, &guard, |_| true).is_none());
    // Fill bucket 4 so that the next spill goes two buckets on.
    for k in 201..(200 + SLOTS as u64 - 2) {
        insert(&index, k, k << 52 | 4, &guard);
    }
    insert(&index, 102, at_home_3(102), &guard);
    let stats = index.stats(&guard);
    assert_eq!((stats.displaced, stats.reach), (3, 2));
    assert!(found(&index, 102, at_home_3(102), &guard));
    // A home slot freed is reused before any neighbour.
    assert!(index.remove_deferred(at_home_3(0), &guard, |item| item.key == 0));
    insert(&index, 103, at_home_3(103), &guard);
    assert_eq!(index.stats(&guard).displaced, 3);
    // Removing the displaced entries brings the count, then the reach, down.
    for k in [100, 101] {
        assert!(index.remove_deferred(at_home_3(k), &guard, |item| item.key == k));
    }
    assert_eq!(
        (index.stats(&guard).displaced, index.stats(&guard).reach),
        (1, 2)
    );
    assert!(index.remove_deferred(at_home_3(102), &guard, |item| item.key == 102));
    assert_eq!(
        (index.stats(&guard).displaced, index.stats(&guard).reach),
        (0, 0)
    );
    for k in (1..SLOTS as u64).chain([103]) {
        assert!(found(&index, k, at_home_3(k), &guard), "key {k}");
    }
    assert!(!found(&index, 100, at_home_3(100), &guard));
}

#[test]
fn equal_signatures_are_told_apart_by_the_predicate() {
    // One hash for all: same home, same signature.
    let hash = 0xABC0_0000_0000_0005;
    let index = ExactIndex::<Item>::with_buckets(64);
    let guard = crossbeam_epoch::pin();
    let keys = 0..(3 * SLOTS as u64);
    for k in keys.clone() {
        insert(&index, k, hash, &guard);
    }
    for k in keys.clone() {
        assert!(found(&index, k, hash, &guard), "key {k}");
    }
    assert!(!found(&index, 99, hash, &guard));
    // Another signature at the same home is no candidate.
    assert!(index.find(hash ^ 1 << 60, &guard, |_| true).is_none());
    assert!(index.remove_deferred(hash, &guard, |item| item.key == 4));
    assert!(!found(&index, 4, hash, &guard));
    for k in keys.filter(|&k| k != 4) {
        assert!(found(&index, k, hash, &guard), "key {k}");
    }
}

#[test]
fn a_full_window_hands_the_value_back() {
    let hash = 0x1230_0000_0000_0007;
    let index = ExactIndex::<Item>::with_buckets(1 << 12);
    let guard = crossbeam_epoch::pin();
    let window = SLOTS * (MAX_REACH + 1);
    for k in 0..window as u64 {
        insert(&index, k, hash, &guard);
    }
    let extra = item(999, hash);
    match index.insert(hash, extra.clone(), &guard) {
        Err(error @ InsertError::Full(_)) => assert!(Arc::ptr_eq(&error.into_value(), &extra)),
        other => panic!("{other:?}"),
    }
    assert_eq!(Arc::strong_count(&extra), 1);
    assert_eq!(index.len(), window);
    assert_eq!(index.stats(&guard).reach, MAX_REACH);
    // After a removal the window has room again.
    assert!(index.remove_deferred(hash, &guard, |item| item.key == 3));
    assert!(index.insert(hash, extra, &guard).is_ok());
    assert!(found(&index, 999, hash, &guard));
}

#[test]
fn a_migration_that_does_not_fit_is_taken_back() {
    // Two old homes (3 and 19 of 32) whose entries all go to home 3 of a
    // 16-bucket array, more than its window holds.
    let old = Buckets::new(32);
    let new = Buckets::new(16);
    let window = SLOTS * (MAX_REACH + 1);
    let values: Vec<Arc<Item>> = (0..window as u64 + 2)
        .map(|k| item(k, if k < 4 { 19 } else { 3 }))
        .collect();
    for value in &values {
        let home = old.home(value.hash);
        let meta = old.bucket(home).lock().expect("not moved");
        let bits = address_bits(Arc::as_ptr(value)).expect("fits");
        let meta = old.place(home, meta, 0, bits).expect("room");
        old.bucket(home).unlock(meta);
    }
    let index = ExactIndex::<Item>::with_buckets(1);
    let migrate = |home: usize| {
        let meta = old.bucket(home).lock().expect("not moved");
        index.migrate_locked(&old, home, meta, &new)
    };
    assert!(migrate(19));
    assert!(!migrate(3));
    // Home 3 stays in the old array, unlocked; the new array holds the
    // four entries of old home 19 only.
    let meta = old.bucket(3).meta.load(Ordering::Relaxed);
    assert_eq!(meta & (MOVED | LOCKED), 0);
    assert_ne!(old.bucket(19).meta.load(Ordering::Relaxed) & MOVED, 0);
    let mut in_new = Vec::new();
    new.entries_of(
        3,
        new.bucket(3).meta.load(Ordering::Relaxed),
        |_, _, word| {
            // SAFETY: `values` keeps every value alive.
            in_new.push(unsafe { &*address::<Item>(word) }.key);
        },
    );
    in_new.sort_unstable();
    assert_eq!(in_new, [0, 1, 2, 3]);
    assert_eq!(reach(new.bucket(3).meta.load(Ordering::Relaxed)), 0);
}

#[test]
fn lookups_never_miss_entries_present_throughout_writes_and_resizes() {
    use std::sync::atomic::AtomicBool;
    const STABLE: u64 = 2000;
    let index = Arc::new(ExactIndex::<Item>::with_buckets(1));
    {
        let guard = crossbeam_epoch::pin();
        for k in 0..STABLE {
            insert(&index, k, spread(k), &guard);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let index = index.clone();
            std::thread::spawn(move || {
                // Churn far more entries than the stable ones, so that the
                // index grows and shrinks under the readers.
                for round in 0..6u64 {
                    let keys = (0..20_000u64).map(|i| 1_000_000 * (t + 1) + round * 100_000 + i);
                    for k in keys.clone() {
                        insert(&index, k, spread(k), &crossbeam_epoch::pin());
                    }
                    for k in keys {
                        let guard = crossbeam_epoch::pin();
                        assert!(index.remove_deferred(spread(k), &guard, |item| item.key == k));
                    }
                }
            })
        })
        .collect();
    let reader = {
        let (index, stop) = (index.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut lookups = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let guard = crossbeam_epoch::pin();
                for k in 0..STABLE {
                    assert!(found(&index, k, spread(k), &guard), "missed key {k}");
                }
                lookups += STABLE;
            }
            lookups
        })
    };
    for writer in writers {
        writer.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lookups = reader.join().expect("reader");
    assert!(lookups >= STABLE);
    assert!(index.resizes() >= 2, "{} resizes", index.resizes());
    assert_eq!(index.len(), STABLE as usize);
}

#[test]
fn home_candidates_include_every_matching_filter_byte() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let want = filter(seed >> 52);
        // Random bytes, some of them the wanted one; flags in byte 0.
        let mut meta = seed & 0x3F;
        for i in 0..SLOTS {
            let byte = if (seed >> (20 + i)) & 1 == 1 {
                want
            } else {
                (seed >> (8 * i)) & 0xFF
            };
            meta |= byte << (8 * (i + 1));
        }
        let mask = home_candidates(meta, want);
        for i in 0..SLOTS {
            let byte = (meta >> (8 * (i + 1))) & 0xFF;
            let flagged = mask & (0x80 << (8 * (i + 1))) != 0;
            assert!(
                flagged || byte != want,
                "slot {i} of {meta:#x} for {want:#x}"
            );
        }
        // Only filter bytes are flagged, and `slot_of` names real slots.
        let mut rest = mask;
        while rest != 0 {
            assert!(slot_of(rest) < SLOTS);
            rest &= rest - 1;
        }
        assert_eq!(mask & 0xFF, 0);
    }
}
