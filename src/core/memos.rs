//! Each port's [`PortMemo`]: what the policy remembers of a port beyond the
//! PCBs that hold it (Linux's bind-bucket history), kept per table.

use std::collections::HashMap;

use crate::policy::{PortMemo, RuleSet};
use crate::raw::PortLock;
use crate::sync::{lock, Mutex};

/// Stripes of the per-port memory, as many as the port lock has: a writer of
/// port `p` holds `p`'s port lock, so no two writers meet on a stripe.
const MEMO_STRIPES: usize = 256;

/// Per-port [`PortMemo`]s of one table. Read and written only by writers that
/// hold the port's lock; never read by lookups.
///
/// This type maintains the invariant that it stores no empty memo, so its
/// size is bounded by the ports whose memo is not empty.
pub(crate) struct PortMemos {
    /// Empty when the policy keeps no history (every call is then a no-op).
    stripes: Box<[Mutex<HashMap<u16, PortMemo>>]>,
}

impl PortMemos {
    /// The memory a table with `rules` needs: stripes only if the policy
    /// keeps a history.
    pub(crate) fn for_rules(rules: &RuleSet) -> Self {
        let stripes = if rules.keeps_bucket_history() {
            MEMO_STRIPES
        } else {
            0
        };
        Self {
            stripes: (0..stripes).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn stripe(&self, port: u16) -> Option<&Mutex<HashMap<u16, PortMemo>>> {
        self.stripes.get(port as usize % MEMO_STRIPES)
    }

    /// The memo of `port`, whose lock is `held`.
    pub(crate) fn get(&self, held: &PortLock<'_>, port: u16) -> PortMemo {
        debug_assert_eq!(held.port(), port);
        self.stripe(port)
            .and_then(|stripe| lock(stripe).get(&port).copied())
            .unwrap_or_default()
    }

    /// Replaces the memo of `port`, whose lock is `held`.
    pub(crate) fn set(&self, held: &PortLock<'_>, port: u16, memo: PortMemo) {
        debug_assert_eq!(held.port(), port);
        let Some(stripe) = self.stripe(port) else {
            return;
        };
        let mut map = lock(stripe);
        if memo == PortMemo::default() {
            map.remove(&port);
        } else {
            map.insert(port, memo);
        }
    }
}

impl std::fmt::Debug for PortMemos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMemos").finish_non_exhaustive()
    }
}
