//! [`Builder`]: a table's policy, protocol, ports, hash seed, sizes, and
//! the stack's hooks (source address, port filter, group selector).

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::addr::loopback_source;
use crate::busy::{self, BusyHints};
use crate::core::{ExactPcbs, Shared, SourceAddress};
use crate::hooks::{GroupPacket, Hooks, PortCandidate};
use crate::policy::{ConnectWild, KernelOptions, Policy, Protocol, RuleSet, Rules, TwReuse};
use crate::ports::Ephemeral;
use crate::sync::Arc;
use crate::table::PcbTable;

/// Builds a [`PcbTable`] with another policy, protocol, port range or seed.
///
/// ```
/// use pcbhash::{PcbTable, Policy, Protocol};
/// let table: PcbTable<()> = PcbTable::<()>::builder()
///     .policy(Policy::Linux)
///     .protocol(Protocol::Udp)
///     .ephemeral_ports(40000..=40999)
///     .seed(42)
///     .build();
/// assert_eq!(table.policy(), Policy::Linux);
/// ```
pub struct Builder {
    policy: Policy,
    custom: Option<std::sync::Arc<dyn Rules>>,
    pub(crate) hooks: Hooks,
    protocol: Protocol,
    ephemeral: Option<RangeInclusive<u16>>,
    seed: Option<u64>,
    capacity: usize,
    exact_buckets: Option<usize>,
    randomized_ports: bool,
    connect_wild: ConnectWild,
    bind_all_fibs: bool,
    tw_reuse: TwReuse,
    source_address: Option<Box<SourceAddress>>,
    #[cfg(test)]
    busy_hints_after: usize,
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
    #[cfg(pcbhash_loom)]
    move_step: Option<crate::sync::MoveStepHook>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            custom: None,
            hooks: Hooks::default(),
            protocol: Protocol::Tcp,
            ephemeral: None,
            seed: None,
            capacity: 1024,
            exact_buckets: None,
            randomized_ports: true,
            connect_wild: ConnectWild::default(),
            tw_reuse: TwReuse::default(),
            bind_all_fibs: true,
            source_address: None,
            #[cfg(test)]
            busy_hints_after: busy::INSTALL_AFTER,
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
            #[cfg(pcbhash_loom)]
            move_step: None,
        }
    }
}

impl Builder {
    /// The defaults: FreeBSD, TCP, the policy's port range, a random seed.
    /// The same as [`PcbTable::builder`], without naming the socket type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel whose rules to follow. Default: FreeBSD.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// A policy of your own in place of the kernel's: `rules` answers every
    /// decision (see [`policy::Rules`](crate::policy::Rules), and its stability note). It serves
    /// the protocol that [`protocol`](Self::protocol) names; the FreeBSD
    /// settings ([`connect_inaddr_wild`](Self::connect_inaddr_wild),
    /// [`connect_in6addr_wild`](Self::connect_in6addr_wild)) do not apply to
    /// it, and [`PcbTable::policy`] still reports the built-in policy
    /// [`policy`](Self::policy) named.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pcbhash::policy::{self, Rules};
    /// use pcbhash::{Builder, Policy, Protocol};
    ///
    /// // A policy that wraps a built-in one would forward every method; here,
    /// // the built-in Linux rules stand in for a custom object.
    /// let rules: Arc<dyn Rules> = policy::builtin(Policy::Linux, Protocol::Udp);
    /// let table: pcbhash::PcbTable<()> = Builder::new()
    ///     .protocol(Protocol::Udp)
    ///     .custom_policy(rules)
    ///     .build();
    /// assert_eq!(table.protocol(), Protocol::Udp);
    /// ```
    pub fn custom_policy(mut self, rules: std::sync::Arc<dyn Rules>) -> Self {
        self.custom = Some(rules);
        self
    }

    /// TCP or UDP. Default: TCP.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The ephemeral port range, inclusive. Default: the policy's
    /// (10000–65535 for FreeBSD, 32768–60999 for Linux).
    pub fn ephemeral_ports(mut self, range: RangeInclusive<u16>) -> Self {
        self.ephemeral = Some(range);
        self
    }

    /// A fixed seed for the hash keys and the port generator, for
    /// reproducible tests. Default: random per table.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Expected number of connected PCBs; the exact index starts that large
    /// and grows (incrementally) past it.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// For tests and model checking: the exact index starts with `buckets`
    /// buckets (rounded up to a power of two, at least one) instead of the
    /// number [`capacity`](Self::capacity) gives, and never shrinks below
    /// that. It grows once it holds more than four connections per bucket
    /// (one per bucket in the loom models, whose buckets have two slots), so
    /// with one bucket the fifth connection (the second under loom) triggers
    /// a resize. Overrides `capacity`.
    #[doc(hidden)]
    pub fn exact_buckets(mut self, buckets: usize) -> Self {
        self.exact_buckets = Some(buckets);
        self
    }

    /// For the loom models' self-test only (compiled with
    /// `--cfg pcbhash_broken`): a table with one piece of its synchronisation
    /// deliberately removed. `variant` is `"resize-moved-first"`,
    /// `"one-exact-probe"`, `"skip-connecting"`, `"ignore-moves"`,
    /// `"no-port-lock"` or `"free-at-once"` (the last one is memory-unsafe on purpose, for a
    /// sanitizer to catch).
    ///
    /// # Panics
    ///
    /// On an unknown variant.
    #[cfg(pcbhash_broken)]
    #[doc(hidden)]
    pub fn broken(mut self, variant: &str) -> Self {
        self.broken = crate::sync::Broken::named(variant);
        self
    }

    /// For the loom models only (compiled with `--cfg pcbhash_loom`): `hook`
    /// is called with the name of each step that a move between the wildcard
    /// list and the exact index passes, with the port's lock held, so that a
    /// model can park the writer in the middle of the move. The steps are
    /// `"connect: tuple published"` (the PCB is still in the wildcard list
    /// only), `"connect: exact linked"` (in both places),
    /// `"disconnect: wildcard linked"` (in both places, its tuple still the
    /// connected one) and `"disconnect: tuple published"` (in both places,
    /// its tuple the unconnected one, which its exact entry no longer
    /// matches); a Linux UDP reconnect to another peer passes
    /// `"disconnect: wildcard linked"`, `"reconnect: old exact unlinked"`
    /// (in the wildcard list only, its tuple still the old one), then the
    /// two connect steps.
    #[cfg(pcbhash_loom)]
    #[doc(hidden)]
    pub fn on_move_step<F>(mut self, hook: F) -> Self
    where
        F: Fn(&'static str) + Send + Sync + 'static,
    {
        self.move_step = Some(Arc::new(hook));
        self
    }

    /// For the crate's tests: a `connect()` scan installs a busy-port hint
    /// after meeting `ports` ports taken by its destination (`usize::MAX`:
    /// never).
    #[cfg(test)]
    pub(crate) fn busy_hints_after(mut self, ports: usize) -> Self {
        self.busy_hints_after = ports;
        self
    }

    /// Whether FreeBSD ephemeral scans start at a random port
    /// (`net.inet.ip.portrange.randomized`, default on) or after the last port
    /// handed out.
    pub fn randomized_ports(mut self, on: bool) -> Self {
        self.randomized_ports = on;
        self
    }

    /// FreeBSD `net.inet.ip.connect_inaddr_wild`: whether `connect()` to
    /// `0.0.0.0` or `255.255.255.255` goes ahead. Off (FreeBSD 15's default):
    /// both give `NetworkUnreachable`. On (FreeBSD 14's behaviour): `0.0.0.0`
    /// stands for the host's first IPv4 address, which the table takes to be
    /// `127.0.0.1`, and `255.255.255.255` stays itself (TCP refuses it with
    /// `PermissionDenied` either way). Ignored by [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Cred, Error, Family, PcbTable};
    /// let strict: PcbTable<()> = PcbTable::new();
    /// let pcb = strict.attach(Family::Inet, Cred::ROOT, ());
    /// assert_eq!(pcb.connect("0.0.0.0:80".parse()?), Err(Error::NetworkUnreachable));
    ///
    /// let wild: PcbTable<()> = PcbTable::<()>::builder().connect_inaddr_wild(true).build();
    /// let pcb = wild.attach(Family::Inet, Cred::ROOT, ());
    /// pcb.connect("0.0.0.0:80".parse()?)?;
    /// assert_eq!(pcb.peer_addr(), Some("127.0.0.1:80".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_inaddr_wild(mut self, on: bool) -> Self {
        self.connect_wild.inaddr = on;
        self
    }

    /// FreeBSD `net.inet6.ip6.connect_in6addr_wild`: whether `connect()` to
    /// `::` goes to `::1`. On (FreeBSD 15's default); off, it gives
    /// `NetworkUnreachable`. Ignored by [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Cred, Error, Family, PcbTable};
    /// let table: PcbTable<()> = PcbTable::new();
    /// let pcb = table.attach(Family::Inet6, Cred::ROOT, ());
    /// pcb.connect("[::]:80".parse()?)?;
    /// assert_eq!(pcb.peer_addr(), Some("[::1]:80".parse()?));
    ///
    /// let strict: PcbTable<()> = PcbTable::<()>::builder().connect_in6addr_wild(false).build();
    /// let pcb = strict.attach(Family::Inet6, Cred::ROOT, ());
    /// assert_eq!(pcb.connect("[::]:80".parse()?), Err(Error::NetworkUnreachable));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_in6addr_wild(mut self, on: bool) -> Self {
        self.connect_wild.in6addr = on;
        self
    }

    /// FreeBSD `net.inet.tcp.bind_all_fibs` (or `net.inet.udp.bind_all_fibs`
    /// for a UDP table): whether a PCB's FIB
    /// ([`Pcb::bind_device`](crate::Pcb::bind_device) under `Policy::FreeBsd`, `SO_SETFIB`) leaves
    /// binds and lookups unscoped. On (FreeBSD 15's default): FIBs change
    /// nothing here. Off: `bind()` conflicts only with PCBs of its own FIB
    /// (`in6_pcbbind_avail` passes the PCB's `inc_fibnum` to
    /// `in6_pcblookup_local`; the other-owner check and the IPv4 half of a
    /// dual-stack `::` still look at every FIB, `RT_ALL_FIBS`), load-balance
    /// groups form per FIB, and the wildcard stage of a lookup answers only
    /// with PCBs of the packet's FIB (`in6_pcblookup_wild_match`: `if (fib
    /// != RT_ALL_FIBS && inp->inp_inc.inc_fibnum != fib)`):
    /// [`PcbTable::lookup_on`] names the FIB, and [`PcbTable::lookup`] is a
    /// packet of FIB 0. Connected PCBs answer their flow from any FIB
    /// (`in6_pcblookup_hash_exact` takes no FIB), and ephemeral ports are
    /// picked over all FIBs (`in_pcb_lport_dest`). Ignored by
    /// [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Builder, Cred, Device, Error, Family, Protocol};
    ///
    /// let table = Builder::default().protocol(Protocol::Udp).bind_all_fibs(false).build::<&str>();
    /// let fib0 = table.attach(Family::Inet, Cred::ROOT, "fib 0");
    /// fib0.bind("0.0.0.0:53".parse()?)?;
    /// let fib1 = table.attach(Family::Inet, Cred::ROOT, "fib 1");
    /// fib1.bind_device(Some(Device(1)))?;
    /// // Another FIB: no conflict, and no SO_REUSEPORT needed.
    /// fib1.bind("0.0.0.0:53".parse()?)?;
    /// // Bound while FIBs scope binds, the FIB stays (EISCONN).
    /// assert_eq!(fib1.bind_device(Some(Device(2))), Err(Error::AlreadyConnected));
    ///
    /// let (local, remote) = ("127.0.0.1:53".parse()?, "127.0.0.1:4000".parse()?);
    /// let guard = table.pin();
    /// let on = |fib| table.lookup_on(fib, local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(on(Device(1)), Some(&"fib 1"));
    /// assert_eq!(on(Device(2)), None);
    /// let default_fib = table.lookup(local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(default_fib, Some(&"fib 0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_all_fibs(mut self, on: bool) -> Self {
        self.bind_all_fibs = on;
        self
    }

    /// Linux `net.ipv4.tcp_tw_reuse` ([`TwReuse`], default
    /// [`TwReuse::Off`]): whether an unbound `connect()` may take over the
    /// 4-tuple of a TIME_WAIT PCB that the stack marked reusable with
    /// [`Pcb::allow_tw_reuse`](crate::Pcb::allow_tw_reuse). The kernel's own default is
    /// [`TwReuse::Loopback`]; a table changes nothing until the stack
    /// marks PCBs, since only the stack knows whether the connection used
    /// timestamps and when `tcp_tw_reuse_delay` has passed. Ignored by
    /// [`Policy::FreeBsd`].
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable, Policy, TwReuse};
    ///
    /// let table = PcbTable::<()>::builder()
    ///     .policy(Policy::Linux)
    ///     .ephemeral_ports(40000..=40000)
    ///     .tcp_tw_reuse(TwReuse::Loopback)
    ///     .build();
    /// let (server, client) = ("127.0.0.1:80".parse()?, "127.0.0.1:40000".parse()?);
    /// let first = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert_eq!(first.connect(server)?, client);
    /// first.time_wait()?;
    ///
    /// // The only port's 4-tuple is in TIME_WAIT...
    /// let second = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert!(second.connect(server).is_err());
    /// // ...until the stack says the timestamps allow reuse.
    /// first.allow_tw_reuse()?;
    /// let third = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert_eq!(third.connect(server)?, client);
    /// assert_eq!(first.state(), pcbhash::State::Dropped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp_tw_reuse(mut self, mode: TwReuse) -> Self {
        self.tw_reuse = mode;
        self
    }

    /// The stack's routing decision: the local address `connect()` uses for a
    /// peer when the PCB is unbound or bound to a wildcard. The selector sees
    /// the peer as the PCB's family shows it (v4-mapped for an `Inet6` PCB),
    /// after an unspecified peer became the local host (Linux). `None` makes
    /// `connect()` fail with `NetworkUnreachable`. The default knows only
    /// loopback: `127.0.0.0/8` → `127.0.0.1`, `::1` → `::1`,
    /// `::ffff:127.x.y.z` → `::ffff:127.0.0.1`.
    pub fn source_address<F>(mut self, select: F) -> Self
    where
        F: Fn(IpAddr) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.source_address = Some(Box::new(select));
        self
    }

    /// The table.
    pub fn build<S: Send + Sync + 'static>(self) -> PcbTable<S> {
        let (hasher, port_seed) = match self.seed {
            Some(seed) => (
                ahash::RandomState::with_seeds(
                    seed,
                    seed ^ 0x243F_6A88_85A3_08D3,
                    seed ^ 0x1319_8A2E_0370_7344,
                    seed ^ 0xA409_3822_299F_31D0,
                ),
                seed,
            ),
            None => {
                let hasher = ahash::RandomState::new();
                let port_seed = ahash::RandomState::new().hash_one(0x5EED_u64);
                (hasher, port_seed)
            }
        };
        let options = KernelOptions {
            connect_wild: self.connect_wild,
            bind_all_fibs: self.bind_all_fibs,
            tw_reuse: self.tw_reuse,
        };
        let rules = RuleSet::new(self.policy, self.protocol, options, self.custom);
        let range = self.ephemeral.unwrap_or_else(|| rules.default_ephemeral());
        let mut shared = Shared::new(
            rules,
            hasher,
            ExactPcbs::new(self.capacity, self.exact_buckets),
            Ephemeral::new(range, port_seed, self.randomized_ports),
            BusyHints::new({
                #[cfg(test)]
                let after = self.busy_hints_after;
                #[cfg(not(test))]
                let after = busy::INSTALL_AFTER;
                after
            }),
            self.source_address
                .unwrap_or_else(|| Box::new(loopback_source)),
        );
        shared.hooks = self.hooks;
        #[cfg(pcbhash_loom)]
        {
            shared.move_step = self.move_step;
        }
        #[cfg(pcbhash_broken)]
        shared.set_broken(self.broken);
        PcbTable {
            shared: Arc::new(shared),
        }
    }

    /// A filter over ephemeral-port candidates: `filter` returns `false` to
    /// refuse a port. A per-core stack keeps only the ports whose replies
    /// its NIC hashes to the connecting core's receive queue, as Seastar's
    /// `tcp::connect` (with `hash2cpu`) and F-Stack's `ff_rss_check` (in
    /// `in_pcb_lport_dest`) do. Default: none, every port is a candidate.
    ///
    /// **Where it runs.** For every candidate of every ephemeral-port scan:
    /// `connect()` from an unbound or wildcard-bound socket (the candidate
    /// carries the peer), and the implicit binds that take a port without
    /// one: `bind(port 0)`, `listen()` on an unbound socket, and Linux UDP
    /// `connect()`, which binds first (`remote` is `None` for those). A
    /// port named explicitly (`bind` with a port, `accept`) is never
    /// filtered, nor is the port `connect()` keeps from an earlier bind.
    /// Toward a crowded destination (one that already holds many of the
    /// range's ports), `connect()` also checks a few ports ahead of its
    /// scan, in port order, before the scan starts: the filter then sees
    /// candidates out of the kernel's order, and some the scan never
    /// reaches. The port chosen is the same.
    ///
    /// **Refused is busy.** A refused candidate is passed over as a port in
    /// use is: the scan goes on in the kernel's order, and when every
    /// candidate is refused or busy the call fails as on a full range, with
    /// the kernel's error for it (`connect`: [`Error::AddrNotAvailable`];
    /// `bind`, `listen` and the UDP implicit bind: the policy's error for
    /// an exhausted range).
    ///
    /// **Contract.** The filter runs on the calling thread, inside the
    /// call, with the socket's own lock held and possibly the lock of a
    /// port: it must be cheap, must not block, and must not call into the
    /// table. Its answer must depend only on the candidate (a pure
    /// function): toward a crowded destination, the table remembers refused
    /// ports in its busy-port bitmaps and scans past them a word of 64 at a
    /// time, so that a filter accepting one port in sixteen keeps connect's
    /// cost flat as the range fills.
    ///
    /// Costs one call of `filter` per candidate that the busy-port bitmaps
    /// do not skip, and toward a crowded destination at most 64 more per
    /// `connect()` (each port of the range is checked ahead once, until a
    /// port is freed and checked again); no allocation.
    ///
    /// [`Error::AddrNotAvailable`]: crate::Error::AddrNotAvailable
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use pcbhash::{Builder, Cred, Family, PortCandidate, Policy};
    ///
    /// // The receive queue of a reply, 4 queues (a stand-in for the NIC's
    /// // Toeplitz hash); this core serves queue 2.
    /// fn queue(local: SocketAddr, peer: SocketAddr) -> u16 {
    ///     (local.port() ^ peer.port()) % 4
    /// }
    /// const MINE: u16 = 2;
    ///
    /// let table = Builder::new()
    ///     .policy(Policy::Linux)
    ///     .port_filter(|c: &PortCandidate| c.remote.is_none_or(|peer| queue(c.local, peer) == MINE))
    ///     .build::<()>();
    /// let peer = "127.0.0.1:80".parse()?;
    /// let mut conns = Vec::new();
    /// for _ in 0..8 {
    ///     let pcb = table.attach(Family::Inet, Cred::ROOT, ());
    ///     let local = pcb.connect(peer)?;
    ///     assert_eq!(queue(local, peer), MINE);
    ///     conns.push(pcb);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn port_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&PortCandidate) -> bool + Send + Sync + 'static,
    {
        self.hooks.port_filter = Some(Box::new(filter));
        self
    }

    /// A chooser of the reuseport / load-balance group member that takes a
    /// packet (what a Linux `SO_ATTACH_REUSEPORT_CBPF` / `_EBPF` program
    /// does): `select` returns the member's index, or `None` to let the
    /// table pick by its keyed hash of the 4-tuple, as without a selector.
    /// Default: none.
    ///
    /// **Where it runs.** In [`PcbTable::lookup`], [`PcbTable::lookup_on`]
    /// and [`PcbTable::lookup_batch`], each time the lookup reaches a group
    /// that has a member taking packets (after the exact stage missed); not
    /// for connected flows, and not in [`PcbTable::deliver`], which hands
    /// out every receiver. The selector's choice stands, as Linux's
    /// `run_bpf_filter` takes `socks[index]` without a second look.
    ///
    /// **Out of range.** An index at or past
    /// [`members()`](GroupPacket::members) is no choice: the table falls
    /// back to its keyed hash (Linux `reuseport_select_sock`: "invalid bpf
    /// result: fall back to hash usage"). It never panics.
    ///
    /// **Contract.** The selector runs on the looking-up thread, inside a
    /// lock-free lookup: it must be cheap, must not block, and must not
    /// call into the table. A lookup with no selector set pays nothing for
    /// the option but one test of it, in the group stage only.
    ///
    /// **SO_INCOMING_CPU.** Linux prefers, among the members the hash walk
    /// visits, the first whose `SO_INCOMING_CPU` is the receiving CPU
    /// (`reuseport_select_sock_by_hash`). A stack says the same with a
    /// selector that reads its own socket type through
    /// [`GroupPacket::socket`] and returns the member whose recorded CPU is
    /// the current one, or `None` for the keyed hash: see the example.
    ///
    /// [`PcbTable::lookup`]: crate::PcbTable::lookup
    /// [`PcbTable::lookup_on`]: crate::PcbTable::lookup_on
    /// [`PcbTable::lookup_batch`]: crate::PcbTable::lookup_batch
    /// [`PcbTable::deliver`]: crate::PcbTable::deliver
    ///
    /// ```
    /// use std::cell::Cell;
    /// use pcbhash::{Builder, Cred, Family, Policy};
    ///
    /// // The stack's socket: the CPU its owner runs on (SO_INCOMING_CPU).
    /// struct Socket { cpu: usize }
    /// thread_local!(static CPU: Cell<usize> = const { Cell::new(0) });
    ///
    /// let table = Builder::new()
    ///     .policy(Policy::Linux)
    ///     .group_selector(|packet| {
    ///         let here = CPU.with(Cell::get);
    ///         (0..packet.members()).find(|&i| {
    ///             packet.socket::<Socket>(i).is_some_and(|s| s.cpu == here)
    ///         })
    ///     })
    ///     .build::<Socket>();
    /// let listeners: Vec<_> = (0..4)
    ///     .map(|cpu| {
    ///         let pcb = table.attach(Family::Inet, Cred::ROOT, Socket { cpu });
    ///         pcb.set_reuse_port(true)?;
    ///         pcb.bind("127.0.0.1:8080".parse()?)?;
    ///         pcb.listen()?;
    ///         Ok(pcb)
    ///     })
    ///     .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    ///
    /// let guard = table.pin();
    /// let local = "127.0.0.1:8080".parse()?;
    /// for cpu in 0..4 {
    ///     CPU.with(|c| c.set(cpu));
    ///     let remote = format!("127.0.0.1:{}", 40000 + cpu).parse()?;
    ///     let found = table.lookup(local, remote, &guard).and_then(|pcb| pcb.socket());
    ///     assert_eq!(found.map(|s| s.cpu), Some(cpu));
    /// }
    /// # drop(listeners);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn group_selector<F>(mut self, select: F) -> Self
    where
        F: Fn(&GroupPacket<'_>) -> Option<usize> + Send + Sync + 'static,
    {
        self.hooks.group_selector = Some(Box::new(select));
        self
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("policy", &self.policy)
            .field("custom", &self.custom)
            .field("hooks", &self.hooks)
            .field("protocol", &self.protocol)
            .field("ephemeral", &self.ephemeral)
            .field("seed", &self.seed)
            .field("capacity", &self.capacity)
            .field("exact_buckets", &self.exact_buckets)
            .field("randomized_ports", &self.randomized_ports)
            .field("connect_wild", &self.connect_wild)
            .field("bind_all_fibs", &self.bind_all_fibs)
            .field(
                "source_address",
                &self.source_address.as_ref().map(|_| "custom"),
            )
            .finish()
    }
}

// The table's constructors live beside the builder they call, so that
// the table's module depends on nothing that builds it.
impl<S: Send + Sync + 'static> Default for PcbTable<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static> PcbTable<S> {
    /// A TCP table with the FreeBSD policy and a random hash seed.
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// A builder for other policies, protocols, ranges and seeds.
    pub fn builder() -> Builder {
        Builder::default()
    }
}
