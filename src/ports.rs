//! Ephemeral port selection: the scans a policy chooses from ([`PortScan`]).
//!
//! - FreeBSD (`in_pcb_lport_dest`): a uniformly random starting point in the
//!   range (or the last port handed out, when randomisation is off), then a
//!   sequential scan with wraparound over the whole range.
//! - Linux `bind(port 0)` (`inet_csk_find_open_port`): ports of the opposite
//!   parity to `connect()`'s first (odd offsets), then the other parity;
//!   SO_REUSEADDR sockets search the lower half of the range before the upper.
//! - Linux `connect()` (`__inet_hash_connect`): RFC 6056 algorithm 4, the
//!   double-hash scheme. A keyed hash of the local address and the peer picks a
//!   slot of a perturbation table; the scan starts at the slot's offset, even
//!   offsets first, and the slot advances past the port that was taken.
//!
//! The table tries candidates in order under each port's lock; this module
//! only says in which order. A scan may also jump over ports that a bitmap
//! ([`PortBits`]) marks as known to fail the check, a word of 64 ports at a
//! time ([`Candidates::skip_marked`]): the ports it then tries, and the
//! kernel's loop index that comes with each, are those the full scan would
//! have tried next.

use std::ops::RangeInclusive;

use crate::policy::{PortRange, PortScan};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Slots of the RFC 6056 perturbation table (Linux uses 2^16; the scheme only
/// needs enough slots that unrelated peers rarely share one).
const PERTURB_SLOTS: usize = 256;

/// A candidate port and its position in the scan.
pub(crate) type Candidate = (u32, u16);

/// A bitmap over the 65536 ports that a scan may skip (see
/// [`Candidates::skip_marked`]).
pub(crate) trait PortBits {
    /// The bits of ports `64 * index ..= 64 * index + 63`: bit `n` stands for
    /// port `64 * index + n`; a set bit marks a port the scan may pass over.
    fn word(&self, index: usize) -> u64;
}

/// Every second bit, from bit 0: the ports of one parity in a word.
const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// How many of the `run` ports `port`, `port + stride`, ... (`stride` 1 or
/// 2; the last one at most 65535) are marked in `bits`, counted from the
/// first until one is not. One word read per 64 ports; over long marked
/// stretches, one test per four words.
fn marked_prefix(bits: &impl PortBits, mut port: u32, stride: u32, run: u32) -> u32 {
    let mask = if stride == 1 { u64::MAX } else { EVEN_BITS };
    let per_word = 64 / stride;
    let mut marked = 0;
    while marked < run {
        if port & 63 < stride {
            // The candidates fill whole words from here: test four at once.
            let full = mask << (port & 63);
            while run - marked >= 4 * per_word {
                let index = (port >> 6) as usize;
                let all = bits.word(index)
                    & bits.word(index + 1)
                    & bits.word(index + 2)
                    & bits.word(index + 3);
                if all & full != full {
                    break;
                }
                marked += 4 * per_word;
                port += 256;
            }
            if marked == run {
                break;
            }
        }
        let shift = port & 63;
        let avail = 64 - shift;
        // Past `avail` the shift brings in zeros: unmarked, so `clear` finds
        // them, and `first` tells those apart from a real unmarked port.
        let clear = !(bits.word((port >> 6) as usize) >> shift) & mask;
        let first = clear.trailing_zeros();
        if first < avail {
            return (marked + first / stride).min(run);
        }
        let whole = avail.div_ceil(stride);
        marked += whole;
        port += whole * stride;
    }
    run
}

/// The ephemeral range and the generator state of one table.
pub(crate) struct Ephemeral {
    first: u16,
    last: u16,
    randomized: bool,
    rng: AtomicU64,
    cursor: AtomicU32,
    perturb: Box<[AtomicU32]>,
}

impl Ephemeral {
    /// A range (ends swapped if given backwards, as FreeBSD does) with a
    /// generator seeded by `seed`.
    pub(crate) fn new(range: RangeInclusive<u16>, seed: u64, randomized: bool) -> Self {
        let (mut first, mut last) = range.into_inner();
        if first > last {
            std::mem::swap(&mut first, &mut last);
        }
        Self {
            first,
            last,
            randomized,
            rng: AtomicU64::new(seed),
            // `ipi_lastport` starts at 0, outside any range.
            cursor: AtomicU32::new(0),
            perturb: (0..PERTURB_SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The range, inclusive.
    pub(crate) fn range(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// The table's range, as a scan takes it.
    pub(crate) fn table_range(&self) -> PortRange {
        PortRange::table(self.first, self.last)
    }

    /// A 64-bit random number (splitmix64 over an atomic counter): lock-free
    /// and, from a fixed seed, deterministic for a single thread.
    pub(crate) fn random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The candidates of `scan` over `range`; `flow` is the destination's
    /// keyed hash (only [`PortScan::Perturbed`] reads it).
    pub(crate) fn scan(&self, scan: PortScan, range: PortRange, flow: u64) -> Candidates {
        let (first, last) = if range.first <= range.last {
            (range.first, range.last)
        } else {
            (range.last, range.first)
        };
        let range = PortRange {
            first,
            last,
            ..range
        };
        match scan {
            PortScan::Rover => self.rover(range),
            PortScan::Parity { lower_half_first } => self.parity(range, lower_half_first),
            PortScan::Perturbed => self.perturbed(range, flow),
            PortScan::RandomStart => self.random_start(range),
        }
    }

    /// Records that `scan` over `range` (for `flow`) settled on `port`, its
    /// candidate at loop index `attempt`.
    pub(crate) fn found(
        &self,
        scan: PortScan,
        range: PortRange,
        flow: u64,
        port: u16,
        attempt: u32,
    ) {
        match scan {
            PortScan::Rover => self.rover_found(port),
            PortScan::Perturbed => self.perturbed_found(flow, attempt, Self::step(range)),
            PortScan::Parity { .. } | PortScan::RandomStart => {}
        }
    }

    /// The stride of Linux's `connect()` scan: every port of a PCB's own
    /// range, every second port (one parity per pass) otherwise.
    fn step(range: PortRange) -> u32 {
        if range.own {
            1
        } else {
            2
        }
    }

    /// FreeBSD `in_pcb_lport_dest`: every port of the range once.
    pub(crate) fn rover(&self, range: PortRange) -> Candidates {
        let (first, last) = (u32::from(range.first), u32::from(range.last));
        let count = last - first + 1;
        let start = if self.randomized && first != last {
            first + (self.random() % u64::from(last - first)) as u32
        } else {
            self.cursor.load(Ordering::Relaxed)
        };
        // The scan steps `++*lastport` before it looks, and a port outside
        // the range (the initial 0) becomes `first`: candidate `i` (from 1)
        // is `first + (offset + i - 1) % count`.
        let offset = if (first..=last).contains(&start) {
            start - first + 1
        } else {
            0
        };
        Candidates::sequential(first, count, offset, 1)
    }

    /// Records the port FreeBSD's scan settled on (`ipi_lastport`).
    pub(crate) fn rover_found(&self, port: u16) {
        self.cursor.store(u32::from(port), Ordering::Relaxed);
    }

    /// Linux `inet_csk_find_open_port`: odd offsets first, then even; with
    /// SO_REUSEADDR the lower half of the range, then the upper half.
    ///
    /// As in the kernel, a range with an odd number of ports leaves its last
    /// port out (`remaining &= ~1`), and a range of fewer than four ports is
    /// not split in halves.
    pub(crate) fn parity(&self, range: PortRange, lower_half_first: bool) -> Candidates {
        let low = u32::from(range.first);
        let high = u32::from(range.last) + 1;
        let halves: Vec<(u32, u32)> = if lower_half_first && high - low >= 4 {
            let half = low + (((high - low) >> 2) << 1);
            vec![(low, half), (half, high)]
        } else {
            vec![(low, high)]
        };
        let mut passes = Vec::with_capacity(4);
        for (low, high) in halves {
            let remaining = Self::parity_remaining(low, high);
            let offset = (self.random() % u64::from(remaining)) as u32 | 1;
            passes.push(ParityPass {
                low,
                high,
                remaining,
                offset,
            });
            if remaining > 1 {
                passes.push(ParityPass {
                    low,
                    high,
                    remaining,
                    offset: offset - 1,
                });
            }
        }
        Candidates::parity(&passes)
    }

    /// `remaining` of the Linux scans: the size of `[low, high)`, made even.
    fn parity_remaining(low: u32, high: u32) -> u32 {
        let remaining = high - low;
        if remaining > 1 {
            remaining & !1
        } else {
            remaining.max(1)
        }
    }

    /// Linux `__inet_hash_connect`: RFC 6056 algorithm 4. `flow` is a keyed
    /// hash of (local address, peer address, peer port). The scan starts at
    /// the flow's slot offset, on ports of `low`'s parity, then tries the
    /// other parity. Each candidate carries the kernel's loop index `i` (two
    /// per port), which [`perturbed_found`](Self::perturbed_found)
    /// needs. Over a PCB's own range (`IP_LOCAL_PORT_RANGE`) the scan takes
    /// every port in turn from the slot's offset, one loop index per port.
    pub(crate) fn perturbed(&self, range: PortRange, flow: u64) -> Candidates {
        let low = u32::from(range.first);
        let high = u32::from(range.last) + 1;
        let slot = &self.perturb[flow as usize % PERTURB_SLOTS];
        let offset = slot
            .load(Ordering::Relaxed)
            .wrapping_add((flow >> 32) as u32);
        if range.own {
            let count = high - low;
            return Candidates::sequential(low, count, offset % count, 0);
        }
        let remaining = Self::parity_remaining(low, high);
        let start = offset % remaining;
        let even = start & !1;
        let mut passes = vec![ParityPass {
            low,
            high,
            remaining,
            offset: even,
        }];
        if remaining > 1 {
            passes.push(ParityPass {
                low,
                high,
                remaining,
                offset: even + 1,
            });
        }
        Candidates::parity(&passes)
    }

    /// Advances the RFC 6056 slot of `flow` after the candidate with loop
    /// index `i` was taken: by `max(i, step * random(0..8)) + step`, as
    /// `__inet_hash_connect` does.
    pub(crate) fn perturbed_found(&self, flow: u64, i: u32, step: u32) {
        let jitter = (self.random() % 8) as u32 * step;
        let advance = i.max(jitter) + step;
        self.perturb[flow as usize % PERTURB_SLOTS].fetch_add(advance, Ordering::Relaxed);
    }

    /// Linux `udp_lib_get_port(sk, 0)`: a random first port
    /// (`reciprocal_scale(random, remaining) + low`), then the following
    /// ports, wrapping around. (The kernel walks hash slots in that order and
    /// each slot's ports in a random order; with at least as many slots as
    /// the range has ports, which the UDP table's size ensures for the ranges
    /// in use, every slot holds one port of the range.)
    pub(crate) fn random_start(&self, range: PortRange) -> Candidates {
        let low = u32::from(range.first);
        let count = u32::from(range.last) - low + 1;
        let first = ((self.random() as u32 as u64 * u64::from(count)) >> 32) as u32;
        // Candidate `i` (from 0) is `low + (first + i) % count`.
        Candidates::sequential(low, count, first, 0)
    }
}

/// The candidates of one scan, in the kernel's order: an iterator of
/// [`Candidate`]s that can also skip ahead over marked ports.
pub(crate) struct Candidates(Scan);

enum Scan {
    /// Candidate `k` (from 0) is port `low + (base + k) % count`, with loop
    /// index `k + index_base`.
    Sequential {
        low: u32,
        count: u32,
        base: u32,
        index_base: u32,
        next: u32,
    },
    /// Passes over ports of one parity, in order.
    Parity(ParityScan),
}

/// The passes in order, then the loop index of the next candidate in
/// `passes[pass]`.
struct ParityScan {
    passes: [ParityPass; 4],
    len: usize,
    pass: usize,
    next: u32,
}

impl ParityScan {
    /// The pass the scan is in, after moving past the finished ones (the
    /// loop index `next` restarts at 0 with each pass); `None` once all
    /// `len` passes are done.
    fn current(&mut self) -> Option<ParityPass> {
        while self.pass < self.len {
            let p = self.passes[self.pass];
            if self.next < p.remaining {
                return Some(p);
            }
            self.pass += 1;
            self.next = 0;
        }
        None
    }
}

impl Candidates {
    fn sequential(low: u32, count: u32, base: u32, index_base: u32) -> Self {
        Self(Scan::Sequential {
            low,
            count,
            base,
            index_base,
            next: 0,
        })
    }

    fn parity(list: &[ParityPass]) -> Self {
        let mut passes = [ParityPass::default(); 4];
        passes[..list.len()].copy_from_slice(list);
        Self(Scan::Parity(ParityScan {
            passes,
            len: list.len(),
            pass: 0,
            next: 0,
        }))
    }

    /// Moves past the candidates, from the next one on, whose ports `bits`
    /// marks, up to the first unmarked one: what the next call to `next`
    /// returns is the first unmarked candidate that the scan would have
    /// returned, with its loop index. Costs one word read per 64 ports of a
    /// stretch without wraparound (per 32 candidates of a parity pass).
    pub(crate) fn skip_marked(&mut self, bits: &impl PortBits) {
        match &mut self.0 {
            Scan::Sequential {
                low,
                count,
                base,
                next,
                ..
            } => {
                while *next < *count {
                    let port = *low + (*base + *next) % *count;
                    // The ports up to the end of the range, or of the scan.
                    let run = (*count - *next).min(*low + *count - port);
                    let marked = marked_prefix(bits, port, 1, run);
                    *next += marked;
                    if marked < run {
                        return;
                    }
                }
            }
            Scan::Parity(scan) => {
                while let Some(p) = scan.current() {
                    let port = p.port(scan.next);
                    // Every second port up to the end of the range, or of
                    // the pass (`port(i + 2) == port(i) + 2` until then).
                    let left = (p.remaining - scan.next).div_ceil(2);
                    let run = left.min((p.high - 1 - port) / 2 + 1);
                    let marked = marked_prefix(bits, port, 2, run);
                    scan.next += 2 * marked;
                    if marked < run {
                        return;
                    }
                }
            }
        }
    }
}

impl Iterator for Candidates {
    type Item = Candidate;

    fn next(&mut self) -> Option<Candidate> {
        match &mut self.0 {
            Scan::Sequential {
                low,
                count,
                base,
                index_base,
                next,
            } => {
                if *next >= *count {
                    return None;
                }
                let k = *next;
                *next += 1;
                Some((k + *index_base, (*low + (*base + k) % *count) as u16))
            }
            Scan::Parity(scan) => {
                let p = scan.current()?;
                let i = scan.next;
                scan.next += 2;
                Some((i, p.port(i) as u16))
            }
        }
    }
}

/// One pass over ports of one parity: `low + offset`, then every second port,
/// wrapping inside `[low, high)`; the kernel's loop index `i` goes 0, 2, 4, ...
/// below `remaining`.
#[derive(Clone, Copy, Default)]
struct ParityPass {
    low: u32,
    high: u32,
    remaining: u32,
    offset: u32,
}

impl ParityPass {
    /// The port of loop index `i`.
    fn port(self, i: u32) -> u32 {
        let mut port = self.low + self.offset % self.remaining + i;
        while port >= self.high {
            port -= self.remaining;
        }
        port
    }
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral")
            .field("range", &self.range())
            .field("randomized", &self.randomized)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn freebsd_scan_covers_the_range_once() {
        let eph = Ephemeral::new(10000..=10999, 7, true);
        let ports: Vec<u16> = eph.rover(eph.table_range()).map(|(_, p)| p).collect();
        assert_eq!(ports.len(), 1000);
        assert_eq!(ports.iter().copied().collect::<HashSet<_>>().len(), 1000);
        assert!(ports.iter().all(|p| (10000..=10999).contains(p)));
        // Sequential after the random start.
        for pair in ports.windows(2) {
            assert!(pair[1] == pair[0] + 1 || (pair[0] == 10999 && pair[1] == 10000));
        }
    }

    #[test]
    fn freebsd_without_randomisation_continues_after_the_last_port() {
        let eph = Ephemeral::new(5000..=5003, 1, false);
        // `ipi_lastport` starts at 0: the first scan starts at `first`.
        assert_eq!(
            eph.rover(eph.table_range())
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            vec![5000, 5001, 5002, 5003]
        );
        eph.rover_found(5000);
        assert_eq!(
            eph.rover(eph.table_range())
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            vec![5001, 5002, 5003, 5000]
        );
        eph.rover_found(5002);
        assert_eq!(eph.rover(eph.table_range()).next(), Some((1, 5003)));
        let single = Ephemeral::new(7..=7, 1, true);
        assert_eq!(
            single
                .rover(single.table_range())
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            vec![7]
        );
    }

    #[test]
    fn linux_bind_tries_odd_ports_first_then_even() {
        let eph = Ephemeral::new(32768..=60999, 3, true);
        let ports: Vec<u16> = eph
            .parity(eph.table_range(), false)
            .map(|(_, p)| p)
            .collect();
        let half = ports.len() / 2;
        assert_eq!(ports.len(), 28232);
        assert!(ports[..half].iter().all(|p| p % 2 == 1));
        assert!(ports[half..].iter().all(|p| p % 2 == 0));
        assert_eq!(ports.iter().copied().collect::<HashSet<_>>().len(), 28232);
    }

    #[test]
    fn linux_bind_with_reuseaddr_searches_the_lower_half_first() {
        let eph = Ephemeral::new(32768..=60999, 3, true);
        let ports: Vec<u16> = eph
            .parity(eph.table_range(), true)
            .map(|(_, p)| p)
            .collect();
        let split = 32768 + 14116;
        let lower = ports.iter().take_while(|&&p| p < split).count();
        assert_eq!(lower, 14116);
        assert!(ports[lower..].iter().all(|&p| p >= split));
    }

    #[test]
    fn linux_connect_tries_even_ports_first_and_moves_on_after_success() {
        let eph = Ephemeral::new(32768..=60999, 3, true);
        let flow = 0xDEAD_BEEF_1234_5678;
        let first: Vec<u16> = eph
            .perturbed(eph.table_range(), flow)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(first.len(), 28232);
        assert!(first[..14116].iter().all(|p| p % 2 == 0));
        eph.perturbed_found(flow, 0, 2);
        let again = eph.perturbed(eph.table_range(), flow).next().unwrap().1;
        assert_ne!(again, first[0], "the perturbation slot advances");
    }

    #[test]
    fn linux_connect_counts_two_per_port_in_each_pass() {
        let eph = Ephemeral::new(40000..=40003, 5, true);
        let candidates: Vec<Candidate> = eph.perturbed(eph.table_range(), 42).collect();
        let indexes: Vec<u32> = candidates.iter().map(|&(i, _)| i).collect();
        assert_eq!(indexes, vec![0, 2, 0, 2]);
        let ports: HashSet<u16> = candidates.iter().map(|&(_, p)| p).collect();
        assert_eq!(ports, (40000..=40003).collect());
        assert!(candidates[..2].iter().all(|&(_, p)| p % 2 == 0));
    }

    #[test]
    fn linux_scans_leave_out_the_last_port_of_an_odd_range() {
        let eph = Ephemeral::new(40000..=40002, 5, true);
        for reuse_addr in [false, true] {
            let ports: Vec<u16> = eph
                .parity(eph.table_range(), reuse_addr)
                .map(|(_, p)| p)
                .collect();
            assert_eq!(ports, vec![40001, 40000]);
        }
        let ports: Vec<u16> = eph
            .perturbed(eph.table_range(), 9)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(ports, vec![40000, 40001]);
        let single = Ephemeral::new(40000..=40000, 5, true);
        assert_eq!(
            single
                .parity(single.table_range(), false)
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            vec![40000]
        );
        assert_eq!(
            single
                .perturbed(single.table_range(), 1)
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            vec![40000]
        );
    }

    #[test]
    fn linux_udp_tries_every_port_once_from_a_random_start() {
        let eph = Ephemeral::new(40000..=40063, 5, true);
        for _ in 0..8 {
            let ports: Vec<u16> = eph
                .random_start(eph.table_range())
                .map(|(_, p)| p)
                .collect();
            assert_eq!(ports.len(), 64);
            assert_eq!(ports.iter().copied().collect::<HashSet<_>>().len(), 64);
            for pair in ports.windows(2) {
                assert!(pair[1] == pair[0] + 1 || (pair[0] == 40063 && pair[1] == 40000));
            }
        }
    }

    /// A bitmap from a set of ports.
    struct Marked(Vec<u64>);

    impl Marked {
        fn new(ports: impl IntoIterator<Item = u16>) -> Self {
            let mut words = vec![0; 1024];
            for port in ports {
                words[usize::from(port) / 64] |= 1 << (port % 64);
            }
            Self(words)
        }

        fn has(&self, port: u16) -> bool {
            self.0[usize::from(port) / 64] & (1 << (port % 64)) != 0
        }
    }

    impl PortBits for Marked {
        fn word(&self, index: usize) -> u64 {
            self.0[index]
        }
    }

    /// The candidates `skip_marked` leaves: those the plain scan yields
    /// whose port is not marked, with the same loop indexes, in order.
    fn assert_skips_exactly_the_marked(make: impl Fn() -> Candidates, marked: &Marked) {
        let expected: Vec<Candidate> = make().filter(|&(_, p)| !marked.has(p)).collect();
        let mut scan = make();
        let mut got = Vec::new();
        loop {
            scan.skip_marked(marked);
            match scan.next() {
                Some(candidate) => got.push(candidate),
                None => break,
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn skipping_marked_ports_keeps_the_order_and_the_loop_index() {
        let mut random = crate::test_rng::xorshift(0x1234_5678_9ABC_DEF0);
        let ranges: [RangeInclusive<u16>; 8] = [
            40000..=40000,
            40000..=40002,
            40000..=40003,
            40001..=40190,
            32768..=33791,
            65400..=65535,
            1..=300,
            61000..=65535,
        ];
        for range in ranges {
            for density in [0, 1, 50, 90, 99, 100] {
                let marked = Marked::new(
                    range
                        .clone()
                        .filter(|_| random() % 100 < density)
                        .chain(std::iter::once(range.start().saturating_sub(1))),
                );
                // A run of marked ports across word boundaries as well.
                let seed = random();
                let eph = Ephemeral::new(range.clone(), seed, true);
                let flow = random();
                for _ in 0..4 {
                    assert_skips_exactly_the_marked(
                        || {
                            let e = Ephemeral::new(range.clone(), seed, true);
                            e.rover(e.table_range())
                        },
                        &marked,
                    );
                    assert_skips_exactly_the_marked(
                        || eph.perturbed(eph.table_range(), flow),
                        &marked,
                    );
                    assert_skips_exactly_the_marked(
                        || {
                            let e = Ephemeral::new(range.clone(), seed, true);
                            e.parity(e.table_range(), false)
                        },
                        &marked,
                    );
                    assert_skips_exactly_the_marked(
                        || {
                            let e = Ephemeral::new(range.clone(), seed, true);
                            e.parity(e.table_range(), true)
                        },
                        &marked,
                    );
                    assert_skips_exactly_the_marked(
                        || {
                            let e = Ephemeral::new(range.clone(), seed, true);
                            e.random_start(e.table_range())
                        },
                        &marked,
                    );
                    eph.perturbed_found(flow, (random() % 64) as u32, 2);
                }
                let fixed = Ephemeral::new(range.clone(), seed, false);
                fixed.rover_found(*range.end());
                assert_skips_exactly_the_marked(|| fixed.rover(fixed.table_range()), &marked);
            }
        }
    }

    #[test]
    fn skipping_over_long_marked_stretches_reads_words() {
        // Everything but one port of each parity marked: the scan lands on
        // exactly those, whatever the start.
        let range = 32768..=60999;
        let marked = Marked::new(range.clone().filter(|&p| p != 50001 && p != 33000));
        let eph = Ephemeral::new(range, 11, true);
        for flow in 0..16 {
            let mut scan = eph.perturbed(eph.table_range(), flow);
            scan.skip_marked(&marked);
            assert_eq!(scan.next().map(|(_, p)| p), Some(33000));
            scan.skip_marked(&marked);
            assert_eq!(scan.next().map(|(_, p)| p), Some(50001));
            scan.skip_marked(&marked);
            assert_eq!(scan.next(), None);
            let mut scan = eph.rover(eph.table_range());
            scan.skip_marked(&marked);
            let first = scan.next().map(|(_, p)| p).unwrap();
            assert!(first == 33000 || first == 50001);
        }
    }
}
