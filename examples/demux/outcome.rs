//! What a lookup found, in the four classes the summaries count.
//!
//! The table answers a lookup from one of three places (DESIGN.md, "Lookup
//! order"), and the answer itself tells which:
//!
//! - **exact**: the PCB came from the exact (4-tuple) index, so it has a peer
//!   (`peer_addr()` is `Some`). TIME_WAIT PCBs live there too; they are counted
//!   apart, because their socket is gone.
//! - **group**: an unconnected PCB that is an active member of a reuseport
//!   (Linux) or SO_REUSEPORT_LB (FreeBSD) group; the table picked the member by
//!   a keyed hash of the tuple.
//! - **wildcard**: any other unconnected PCB (listening, or bound for UDP).
//! - **miss**: nothing; a stack answers with a RST or an ICMP port unreachable.

use std::ops::AddAssign;

use pcbhash::{PcbRef, State};

/// The class of one lookup's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A connected PCB from the exact index.
    Exact,
    /// A TIME_WAIT PCB from the exact index (its socket is detached).
    TimeWait,
    /// A member of a reuseport / load-balance group.
    Group,
    /// Another unconnected PCB.
    Wildcard,
    /// No PCB.
    Miss,
}

impl Outcome {
    /// Classifies a lookup's answer.
    pub fn of<S: Send + Sync + 'static>(found: Option<&PcbRef<'_, S>>) -> Outcome {
        match found {
            None => Outcome::Miss,
            Some(pcb) if pcb.peer_addr().is_some() => {
                if pcb.state() == State::TimeWait {
                    Outcome::TimeWait
                } else {
                    Outcome::Exact
                }
            }
            Some(pcb) if pcb.flags().in_group() => Outcome::Group,
            Some(_) => Outcome::Wildcard,
        }
    }
}

/// Lookups counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Exact hits on connected PCBs.
    pub exact: u64,
    /// Exact hits on TIME_WAIT PCBs.
    pub time_wait: u64,
    /// Hits on group members.
    pub group: u64,
    /// Hits on other unconnected PCBs.
    pub wildcard: u64,
    /// Misses.
    pub miss: u64,
}

impl Outcomes {
    /// Counts one lookup.
    #[inline]
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Exact => self.exact += 1,
            Outcome::TimeWait => self.time_wait += 1,
            Outcome::Group => self.group += 1,
            Outcome::Wildcard => self.wildcard += 1,
            Outcome::Miss => self.miss += 1,
        }
    }

    /// Every lookup counted.
    pub fn total(&self) -> u64 {
        let Outcomes {
            exact,
            time_wait,
            group,
            wildcard,
            miss,
        } = *self;
        exact + time_wait + group + wildcard + miss
    }
}

impl AddAssign for Outcomes {
    fn add_assign(&mut self, other: Outcomes) {
        let Outcomes {
            exact,
            time_wait,
            group,
            wildcard,
            miss,
        } = other;
        self.exact += exact;
        self.time_wait += time_wait;
        self.group += group;
        self.wildcard += wildcard;
        self.miss += miss;
    }
}
