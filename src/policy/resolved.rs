//! The table's rule set: the policy object, resolved once when the table is
//! built, with what the table asks it most often.

use std::ops::Deref;
use std::sync::Arc;

use super::freebsd::{ConnectWild, FreeBsd};
use super::linux::Linux;
use super::{Lookup, Policy, Protocol, Rules, TwReuse};

/// The rules a table follows: its policy object for its protocol, and the
/// policy's [`Lookup`] answers, copied out so that a lookup reads plain
/// fields. Dereferences to the policy.
#[derive(Clone)]
pub(crate) struct RuleSet {
    rules: Arc<dyn Rules>,
    pub(crate) protocol: Protocol,
    /// The policy's answers for the wildcard stage of a lookup.
    pub(crate) lookup: Lookup,
    /// The policy's [`Rules::fib_scopes_lookups`].
    pub(crate) fib_scoped: bool,
    /// The policy's [`Rules::keeps_bucket_history`].
    pub(crate) bucket_history: bool,
    /// The built-in policy named at build (with a custom policy, the one
    /// [`Builder::policy`](crate::Builder::policy) named, unused).
    pub(crate) named: Policy,
}

impl RuleSet {
    /// The built-in policy `named` for `protocol`, or `custom` in its place.
    pub(crate) fn new(
        named: Policy,
        protocol: Protocol,
        options: Options,
        custom: Option<Arc<dyn Rules>>,
    ) -> Self {
        let rules = custom.unwrap_or_else(|| kernel(named, protocol, options));
        Self {
            lookup: rules.lookup(),
            fib_scoped: rules.fib_scopes_lookups(),
            bucket_history: rules.keeps_bucket_history(),
            rules,
            protocol,
            named,
        }
    }
}

/// The builder's settings of the built-in kernels' sysctls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// FreeBSD: `connect()` to a wildcard address.
    pub(crate) connect_wild: ConnectWild,
    /// FreeBSD `bind_all_fibs`.
    pub(crate) bind_all_fibs: bool,
    /// Linux `tcp_tw_reuse`.
    pub(crate) tw_reuse: TwReuse,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_wild: ConnectWild::default(),
            bind_all_fibs: true,
            tw_reuse: TwReuse::default(),
        }
    }
}

/// The policy object of a built-in kernel.
pub(crate) fn kernel(policy: Policy, protocol: Protocol, options: Options) -> Arc<dyn Rules> {
    match policy {
        Policy::FreeBsd => Arc::new(FreeBsd {
            protocol,
            connect_wild: options.connect_wild,
            bind_all_fibs: options.bind_all_fibs,
        }),
        Policy::Linux => Arc::new(Linux {
            protocol,
            tw_reuse: options.tw_reuse,
        }),
    }
}

impl Deref for RuleSet {
    type Target = dyn Rules;

    fn deref(&self) -> &Self::Target {
        &*self.rules
    }
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
