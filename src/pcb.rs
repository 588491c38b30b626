//! The PCB: `Pcb<S>`, the owner's handle, and `PcbRef<'g, S>`, the view that
//! lookups return.
//!
//! A PCB is one allocation, which holds the stack's socket as well (as
//! Linux's `struct sock` is the PCB), so finding a packet's socket and
//! reading it costs no extra pointer chase. Its fields come in two kinds:
//!
//! - **hash-safe** fields, readable by anyone holding an epoch guard with no
//!   lock: the tuple (stored inline twice with a sequence counter, so a
//!   reader always copies a consistent pair without waiting for a writer),
//!   the atomic `flags2` word and the credential;
//! - the **socket**, present until the PCB enters TIME_WAIT or is closed.
//!   Reading it is the only way to reach it, and it says `None` from the
//!   moment it is detached; the value itself is dropped through the epoch,
//!   so a reference taken under a guard stays valid while that guard lives.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

use crossbeam_epoch::Guard;

use crate::addr::Family;
use crate::core::{PcbInner, Shared};
use crate::cred::{Cred, Device};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::raw::check_guard;
use crate::sync::Arc;

/// The owner's handle on a PCB: what a stack keeps in its socket.
///
/// Not `Clone`: there is one owner. Every lifecycle call goes through it, and
/// dropping it closes the PCB (like [`Pcb::close`]).
///
/// Each method takes this PCB's owner lock and, when the PCB holds or takes a
/// port, that port's writer lock; none takes a global lock. A method that
/// fails leaves the PCB and the table exactly as they were, with one exception
/// that mirrors the kernel: under [`Policy::Linux`](crate::Policy), a failed
/// `connect()` or `bind()` leaves the traces Linux leaves (a UDP `connect()`
/// binds its port before checking the peer and keeps it; a failed TCP
/// `connect()` gives back a port `bind()` chose but keeps a source address it
/// had to pick).
pub struct Pcb<S: Send + Sync + 'static> {
    pub(crate) table: Arc<Shared<S>>,
    pub(crate) inner: Arc<PcbInner<S>>,
}

impl<S: Send + Sync + 'static> Pcb<S> {
    /// `SO_REUSEADDR`. Allowed in any state but TIME_WAIT and closed; the other
    /// PCBs' conflict checks see the new value at once.
    ///
    /// Errors: `InvalidInput` after `time_wait()` or a drop.
    pub fn set_reuse_addr(&self, on: bool) -> Result<(), Error> {
        self.table.set_option(&self.inner, Flags::REUSEADDR, on)
    }

    /// `SO_BINDTODEVICE`: binds the PCB to `device` (an interface index),
    /// or, with `None`, to no device. Allowed in any state but TIME_WAIT
    /// and closed, before or after `bind()`, `listen()` and `connect()`,
    /// as Linux allows it; the PCB keeps its port and its group.
    ///
    /// Under [`Policy::Linux`](crate::Policy): PCBs bound to different
    /// devices never conflict in `bind()`, a device-bound one and an unbound
    /// one do; a device-bound PCB answers only
    /// [`PcbTable::lookup_on`](crate::PcbTable::lookup_on) of its device and
    /// outranks an unbound one there. The table knows no interfaces: which
    /// indexes exist is the stack's to check (`ENODEV` in the kernel).
    ///
    /// Under [`Policy::FreeBsd`](crate::Policy) it is `SO_SETFIB`: the
    /// device's number is the PCB's FIB, and `None` (or `Device(0)`) is
    /// FIB 0, the default. What the FIB scopes is
    /// [`Builder::bind_all_fibs`](crate::Builder::bind_all_fibs)'s to say;
    /// with it off, a PCB bound (or listening, or connected) keeps its FIB
    /// (`AlreadyConnected`, EISCONN, for another one; the same one is
    /// accepted), as `fibs_multibind_test.c`'s `no_setfib_after_bind`
    /// expects. Which FIB numbers exist (`net.fibs`) is the stack's to
    /// check (EINVAL in the kernel).
    ///
    /// Takes the owner lock and, while the PCB holds a port, that port's
    /// writer lock.
    ///
    /// Errors: `InvalidInput` for `Device(0)` under Linux, or after
    /// `time_wait()` or a drop; `AlreadyConnected` as above;
    /// `NotSupported` under a policy without the option.
    ///
    /// ```
    /// use pcbhash::{Builder, Cred, Device, Family, Policy};
    ///
    /// let table = Builder::default().policy(Policy::Linux).build::<()>();
    /// let pcb = table.attach(Family::Inet, Cred::ROOT, ());
    /// pcb.bind_device(Some(Device(2)))?;
    /// assert_eq!(pcb.device(), Some(Device(2)));
    /// pcb.bind_device(None)?;
    /// assert_eq!(pcb.device(), None);
    /// # Ok::<(), pcbhash::Error>(())
    /// ```
    pub fn bind_device(&self, device: Option<Device>) -> Result<(), Error> {
        self.table.bind_device(&self.inner, device)
    }

    /// `SO_REUSEPORT`.
    ///
    /// Linux (as the running kernel does it): the option and group
    /// membership are separate. Clearing it leaves the PCB in its group (its
    /// mates still pick it; met first in its list, it takes the packets
    /// itself), and setting it after `bind()` or `listen()` joins nothing
    /// until the next member binds (UDP) or listens (TCP), which founds a
    /// group with the first matching PCB it meets in the port's list.
    ///
    /// Errors: `InvalidInput` after `time_wait()` or a drop.
    pub fn set_reuse_port(&self, on: bool) -> Result<(), Error> {
        self.table.set_option(&self.inner, Flags::REUSEPORT, on)
    }

    /// `SO_REUSEPORT_LB` (FreeBSD): membership of a load-balance group, decided
    /// when the PCB is bound, from the option set then (`in_pcbinshash`); a
    /// TCP member takes flows once it listens. Setting the option after
    /// `bind()` joins no group, and clearing it does not leave one: a member
    /// leaves its group only when it leaves the table or connects.
    ///
    /// Errors: `OptionNotAvailable` under [`Policy::Linux`](crate::Policy),
    /// `InvalidInput` after `time_wait()` or a drop.
    pub fn set_reuse_port_lb(&self, on: bool) -> Result<(), Error> {
        self.table.set_option(&self.inner, Flags::REUSEPORT_LB, on)
    }

    /// `IP_BIND_ADDRESS_NO_PORT` (Linux): a later `bind()` to port 0 records
    /// the address and takes no port. The PCB stays out of the table (no
    /// bind conflict, [`local_addr`](Pcb::local_addr) is `None`, `bind()`
    /// may be called again), and [`connect`](Pcb::connect) then picks the
    /// port for the whole 4-tuple, so many PCBs share one source address and
    /// port toward different peers. [`listen`](Pcb::listen) (and a UDP
    /// `connect()`) binds the port as `bind()` would have, on the recorded
    /// address. The option changes nothing for a `bind()` with a port, nor
    /// for a PCB already bound; it applies to `Inet6` PCBs too, as in the
    /// kernel.
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable, Policy};
    ///
    /// let table = PcbTable::<()>::builder().policy(Policy::Linux).build();
    /// let server = "127.0.0.1:80".parse()?;
    /// let other = "127.0.0.1:443".parse()?;
    /// let first = table.attach(Family::Inet, Cred::user(1000), ());
    /// first.set_bind_address_no_port(true)?;
    /// assert_eq!(first.bind("127.0.0.2:0".parse()?)?, "127.0.0.2:0".parse()?);
    /// assert_eq!(first.local_addr(), None);
    /// let port = first.connect(server)?.port();
    ///
    /// // Toward another peer, the same source port can serve again.
    /// let second = table.attach(Family::Inet, Cred::user(1000), ());
    /// second.set_bind_address_no_port(true)?;
    /// second.bind("127.0.0.2:0".parse()?)?;
    /// assert_ne!(second.connect(other)?.port(), 0);
    /// # let _ = port;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Errors: `OptionNotAvailable` under [`Policy::FreeBsd`](crate::Policy),
    /// `InvalidInput` after `time_wait()` or a drop.
    pub fn set_bind_address_no_port(&self, on: bool) -> Result<(), Error> {
        self.table.set_option(&self.inner, Flags::BIND_NO_PORT, on)
    }

    /// The PCB's own ephemeral port range, for the ports its `bind()` to
    /// port 0, `listen()` and `connect()` pick; `None` gives it back the
    /// table's range.
    ///
    /// - [`Policy::Linux`](crate::Policy): `IP_LOCAL_PORT_RANGE` (Linux 6.3).
    ///   Each end narrows the table's range only if it lies within it (an
    ///   end of 0, or one outside, leaves the table's end), and two non-zero
    ///   ends backwards are `InvalidInput`. While the option is set,
    ///   `connect()` tries every port in turn instead of its even ports
    ///   first; `bind()` keeps its odd-first order.
    /// - [`Policy::FreeBsd`](crate::Policy): `IP_PORTRANGE` as a range
    ///   (`IP_PORTRANGE_HIGH` is `49152..=65535`, `IP_PORTRANGE_LOW`
    ///   `600..=1023`). The range replaces the table's; one that reaches
    ///   below 1024 needs [`Cred::privileged`](crate::Cred), and the scan
    ///   answers `NotPermitted` (EPERM) without it, as `in_pcb_lport_dest`
    ///   does. A range with an end of 0 is `InvalidInput`.
    ///
    /// Allowed in any state but TIME_WAIT and closed; a PCB already holding
    /// a port keeps it.
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable, Policy};
    ///
    /// let table = PcbTable::<()>::builder()
    ///     .policy(Policy::Linux)
    ///     .ephemeral_ports(40000..=49999)
    ///     .build();
    /// let pcb = table.attach(Family::Inet, Cred::user(1000), ());
    /// pcb.set_local_port_range(Some(45000..=45009))?;
    /// let port = pcb.connect("127.0.0.1:80".parse()?)?.port();
    /// assert!((45000..=45009).contains(&port));
    ///
    /// // Outside the table's range, an end is left to the table.
    /// let other = table.attach(Family::Inet, Cred::user(1000), ());
    /// other.set_local_port_range(Some(30000..=40000))?;
    /// assert_eq!(other.bind("127.0.0.1:0".parse()?)?.port(), 40000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Errors: `InvalidInput` for a range the policy refuses, after
    /// `time_wait()` or a drop.
    pub fn set_local_port_range(&self, range: Option<RangeInclusive<u16>>) -> Result<(), Error> {
        self.table.set_local_port_range(&self.inner, range)
    }

    /// Marks this TIME_WAIT PCB reusable: under [`Policy::Linux`](crate::Policy)
    /// with [`Builder::tcp_tw_reuse`](crate::Builder::tcp_tw_reuse) on, an
    /// unbound `connect()` may then take over its 4-tuple, and the PCB
    /// becomes [`State::Dropped`](crate::State). A stack calls it when the
    /// kernel's `tcp_twsk_unique` would accept the twin: the connection saw
    /// timestamps, and `tcp_tw_reuse_delay` (1 s by default) has passed
    /// since it entered TIME_WAIT. See the builder's example.
    ///
    /// Errors: `InvalidInput` unless in TIME_WAIT.
    pub fn allow_tw_reuse(&self) -> Result<(), Error> {
        self.table.allow_tw_reuse(&self.inner)
    }

    /// `IPV6_V6ONLY`: whether an `Inet6` PCB bound to `::` also takes IPv4.
    ///
    /// Errors: `OptionNotAvailable` on an `Inet` PCB, `InvalidInput` once bound.
    pub fn set_v6only(&self, on: bool) -> Result<(), Error> {
        self.table.set_option(&self.inner, Flags::V6ONLY, on)
    }

    /// `bind(2)`. Port 0 picks an ephemeral port. Returns the bound address.
    ///
    /// Takes the port's writer lock (for port 0, each candidate's in turn);
    /// the conflict check and the insert happen under it, atomically.
    ///
    /// Errors: `InvalidInput` (bound already, V6ONLY with a v4-mapped address),
    /// `FamilyNotSupported`, `PermissionDenied` (port below 1024 without
    /// privilege), `AddrInUse`, and on port exhaustion `AddrNotAvailable`
    /// (FreeBSD) or `AddrInUse` (Linux).
    pub fn bind(&self, local: SocketAddr) -> Result<SocketAddr, Error> {
        self.table.bind(&self.inner, local)
    }

    /// `listen(2)` (TCP). Binds an ephemeral port first if unbound. Listening
    /// twice is allowed. A SO_REUSEPORT listener joins its group here (Linux);
    /// a SO_REUSEPORT_LB member that joined at `bind()` starts taking flows
    /// (FreeBSD).
    ///
    /// Errors: `NotSupported` for UDP, `InvalidInput` when connected, and
    /// (Linux) `AddrInUse` when the re-check finds a conflict. Linux also
    /// answers `InvalidInput` for a PCB that has ever been connected, even
    /// after [`disconnect`](Pcb::disconnect), and keeps the ephemeral port
    /// the call took for it, as the running kernel does.
    pub fn listen(&self) -> Result<(), Error> {
        self.table.listen(&self.inner)
    }

    /// `connect(2)`: binds implicitly if needed (source address from the
    /// table's selector, ephemeral port keeping the 4-tuple unique) and moves
    /// the PCB to the exact index. Returns the local address.
    ///
    /// A lookup running during the move finds the PCB in one place or the
    /// other, never in neither.
    ///
    /// A connected UDP PCB connects again to the new peer: Linux keeps its
    /// local address; FreeBSD disconnects it first (`soconnectat`), so the
    /// local address is chosen anew, and stays the wildcard if the new peer
    /// is refused.
    ///
    /// An unspecified peer (`0.0.0.0`, `::ffff:0.0.0.0`, `::`) means the local
    /// host under `Policy::Linux`, as in the kernel: the PCB's own IPv4
    /// address if it is bound to one, else `127.0.0.1`; `::` is `::1`, or
    /// `::ffff:127.0.0.1` from a v4-mapped address. [`peer_addr`](Pcb::peer_addr)
    /// then shows that address. FreeBSD connects to `::` as to `::1`, and to
    /// `0.0.0.0` only under
    /// [`Builder::connect_inaddr_wild`](crate::Builder::connect_inaddr_wild).
    ///
    /// Errors: `AlreadyConnected`, `NotSupported` (TCP with SO_REUSEPORT_LB on
    /// FreeBSD), `FamilyNotSupported`, `PermissionDenied` (FreeBSD TCP to
    /// `255.255.255.255`), `NetworkUnreachable` (no source address; FreeBSD:
    /// an unspecified or broadcast peer the sysctls refuse),
    /// `AddrNotAvailable` (exhaustion; FreeBSD also port 0), `WouldBlock`
    /// (Linux UDP: no port for the automatic bind), `AddrInUse` /
    /// `AddrNotAvailable` when the bound port already has this 4-tuple
    /// (FreeBSD / Linux). Linux: `InvalidInput` for a link-local IPv6 peer
    /// (no device) and for a TCP PCB that has ever listened, even after
    /// [`disconnect`](Pcb::disconnect); a UDP peer port 0 means every port of
    /// the peer's address; of several UDP PCBs connected over one 4-tuple,
    /// the last one connected receives; a UDP member of a reuseport group
    /// leaves it for good.
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable, Policy, Protocol};
    ///
    /// let table = PcbTable::<()>::builder()
    ///     .policy(Policy::Linux)
    ///     .protocol(Protocol::Udp)
    ///     .build();
    /// let pcb = table.attach(Family::Inet, Cred::ROOT, ());
    /// pcb.connect("0.0.0.0:30000".parse().unwrap()).unwrap();
    /// assert_eq!(pcb.peer_addr(), Some("127.0.0.1:30000".parse().unwrap()));
    /// ```
    pub fn connect(&self, remote: SocketAddr) -> Result<SocketAddr, Error> {
        self.table.connect(&self.inner, remote)
    }

    /// The passive open on a listener: creates the connected PCB for a
    /// completed handshake of `remote` to `local` (the packet's destination,
    /// on the listener's port), inheriting family and credential, and the
    /// reuse bits under Linux (`sk_clone_lock`) but not under FreeBSD
    /// (`solisten_clone` copies none of them).
    ///
    /// No bind-conflict check runs, but the 4-tuple must be free: a TIME_WAIT
    /// PCB holding it is replaced (it becomes `Dropped`); any other holder
    /// gives `AddrInUse`. Takes the port's writer lock.
    ///
    /// `socket` moves into the new PCB's own allocation. If the call fails,
    /// `socket` is dropped before it returns, as a value given to a failed
    /// constructor is; [`try_accept`](Pcb::try_accept) hands it back instead.
    ///
    /// Errors: `NotSupported` for UDP, `InvalidInput` if this PCB is not
    /// listening or `local` / `remote` do not fit it, `AddrInUse`.
    pub fn accept(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        socket: S,
    ) -> Result<Pcb<S>, Error> {
        self.try_accept(local, remote, socket)
            .map_err(|(error, _socket)| error)
    }

    /// [`accept`](Pcb::accept), but a failure hands the socket back with the
    /// error, so that the stack can answer the handshake with it or use it
    /// for another flow.
    ///
    /// ```
    /// use pcbhash::{Cred, Error, Family, PcbTable};
    ///
    /// let table = PcbTable::<String>::new();
    /// let listener = table.attach(Family::Inet, Cred::ROOT, "listener".into());
    /// listener.bind("127.0.0.1:8080".parse().unwrap()).unwrap();
    /// listener.listen().unwrap();
    /// let (local, peer) = ("127.0.0.1:8080".parse().unwrap(), "127.0.0.1:5000".parse().unwrap());
    /// let conn = listener.try_accept(local, peer, "first".into()).unwrap();
    /// // The same 4-tuple again: refused, and the socket comes back.
    /// let (error, socket) = listener.try_accept(local, peer, "second".into()).unwrap_err();
    /// assert_eq!((error, socket.as_str()), (Error::AddrInUse, "second"));
    /// # drop(conn);
    /// ```
    pub fn try_accept(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        socket: S,
    ) -> Result<Pcb<S>, (Error, S)> {
        let child = self.table.accept(&self.inner, local, remote, socket)?;
        Ok(Pcb {
            table: self.table.clone(),
            inner: child,
        })
    }

    /// `connect(AF_UNSPEC)` on a UDP PCB: back to the wildcard index.
    /// Linux does not put a reuseport member back into its group, and takes
    /// a member bound to a wildcard address out of it even when it was not
    /// connected.
    ///
    /// Linux TCP (`tcp_disconnect`): a connection is aborted (the stack
    /// sends the reset) and a listener stops listening; either keeps its
    /// port only if `bind()` named it, and its address only if `bind()` named
    /// that. Afterwards, as the running kernel answers, a PCB that has
    /// listened may listen again but never `connect()`, and one that has
    /// been connected may connect again but never `listen()`.
    ///
    /// Errors: `NotSupported` for TCP under FreeBSD; `NotConnected`
    /// (FreeBSD) when not connected; `InvalidInput` (Linux TCP) after
    /// `time_wait()`.
    pub fn disconnect(&self) -> Result<(), Error> {
        self.table.disconnect(&self.inner)
    }

    /// Enters TIME_WAIT: the socket is detached (`socket()` gives `None` from
    /// now on, and the value is dropped once no guard that could have read
    /// it remains) while the tuple and reuse bits stay in the table. The
    /// owner keeps the handle and drops it when 2MSL expires.
    ///
    /// Errors: `InvalidInput` unless this is a connected TCP PCB.
    pub fn time_wait(&self) -> Result<(), Error> {
        self.table.time_wait(&self.inner)
    }

    /// Closes the PCB: it leaves every index and its group, and its socket
    /// is detached. Once this returns, no new lookup finds it, and
    /// `socket()` on any `PcbRef` still held gives `None`. The socket is
    /// dropped, and the memory released, when the last guard that could see
    /// them is dropped ([`PcbTable::flush`](crate::PcbTable::flush)
    /// hastens it on an idle thread).
    pub fn close(self) {
        // `Drop` does the work.
    }

    /// The local address (mapped form for an `Inet6` PCB on IPv4), or `None`
    /// while unbound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let guard = crossbeam_epoch::pin();
        let state = self.inner.state();
        state.is_in_table().then(|| {
            self.inner
                .tuple(&guard)
                .local
                .to_socket(self.inner.family())
        })
    }

    /// The peer, while connected or in TIME_WAIT.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let guard = crossbeam_epoch::pin();
        let tuple = self.inner.tuple(&guard);
        (self.inner.state().is_connected() && tuple.is_connected())
            .then(|| tuple.remote.to_socket(self.inner.family()))
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.inner.state()
    }

    /// A snapshot of the `flags2` word.
    pub fn flags(&self) -> Flags {
        self.inner.flags()
    }

    /// The family given at attach.
    pub fn family(&self) -> Family {
        self.inner.family()
    }

    /// The credential given at attach.
    pub fn cred(&self) -> Cred {
        self.inner.cred()
    }

    /// The device of [`bind_device`](Self::bind_device), if any; under
    /// `Policy::FreeBsd`, the FIB, `None` for FIB 0.
    pub fn device(&self) -> Option<Device> {
        self.inner.device().or_else(|| self.inner.fib())
    }

    /// The socket, until `time_wait()` or close; `None` from then on. No
    /// reference count and no lock: one load. The reference stays valid as
    /// long as `guard`, even if this handle is closed meanwhile (the socket
    /// is dropped through the epoch).
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable};
    ///
    /// let table = PcbTable::<String>::new();
    /// let pcb = table.attach(Family::Inet, Cred::ROOT, "sock".to_string());
    /// let guard = table.pin();
    /// let socket = pcb.socket(&guard).unwrap();
    /// pcb.close();
    /// assert_eq!(socket, "sock"); // still valid: the guard holds it
    /// ```
    ///
    /// # Panics
    ///
    /// If `guard` was pinned on a collector other than crossbeam-epoch's
    /// default one (use [`PcbTable::pin`](crate::PcbTable::pin)).
    #[inline]
    pub fn socket<'g>(&self, guard: &'g Guard) -> Option<&'g S> {
        check_guard(guard, self.table.collector);
        self.inner.socket(guard)
    }

    /// A guard-bound view of this PCB, like the ones lookups return.
    pub fn as_ref<'g>(&'g self, guard: &'g Guard) -> PcbRef<'g, S> {
        PcbRef::new(&self.inner, guard)
    }
}

impl<S: Send + Sync + 'static> Drop for Pcb<S> {
    fn drop(&mut self) {
        self.table.close(&self.inner);
    }
}

impl<S: Send + Sync + 'static> fmt::Debug for Pcb<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pcb")
            .field("family", &self.inner.family())
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .field("flags", &self.flags())
            .field("cred", &self.inner.cred())
            .finish()
    }
}

/// A guard-bound, read-only view of a PCB, as lookups return it.
///
/// `Copy`, valid while the epoch guard lives. Every method reads hash-safe
/// fields only (no lock, no socket dereference), except [`PcbRef::socket`],
/// which reads the socket and gives `None` once the PCB is in TIME_WAIT
/// or closed.
pub struct PcbRef<'g, S: Send + Sync + 'static> {
    inner: &'g PcbInner<S>,
    guard: &'g Guard,
}

impl<S: Send + Sync + 'static> Clone for PcbRef<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Send + Sync + 'static> Copy for PcbRef<'_, S> {}

impl<'g, S: Send + Sync + 'static> PcbRef<'g, S> {
    #[inline]
    pub(crate) fn new(inner: &'g PcbInner<S>, guard: &'g Guard) -> Self {
        Self { inner, guard }
    }

    /// The local address (mapped form for an `Inet6` PCB on IPv4).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .tuple(self.guard)
            .local
            .to_socket(self.inner.family())
    }

    /// The peer, if connected.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let tuple = self.inner.tuple(self.guard);
        tuple
            .is_connected()
            .then(|| tuple.remote.to_socket(self.inner.family()))
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.inner.state()
    }

    /// A snapshot of the `flags2` word.
    pub fn flags(&self) -> Flags {
        self.inner.flags()
    }

    /// The owner's credential.
    pub fn cred(&self) -> Cred {
        self.inner.cred()
    }

    /// The device the PCB is bound to (SO_BINDTODEVICE), if any; under
    /// `Policy::FreeBsd`, its FIB (SO_SETFIB), `None` for FIB 0.
    pub fn device(&self) -> Option<Device> {
        self.inner.device().or_else(|| self.inner.fib())
    }

    /// The family given at attach.
    pub fn family(&self) -> Family {
        self.inner.family()
    }

    /// The socket, or `None` once the PCB is in TIME_WAIT or closed. No
    /// reference count and no write: one load from the PCB's own
    /// allocation. The reference is valid while the guard lives (as Linux's
    /// "noref" lookups are under RCU): the table drops a socket it detaches
    /// only once no guard can still see it. A stack that wants to keep the
    /// socket beyond the guard stores an `Arc<T>` as `S` and clones it.
    #[inline]
    pub fn socket(&self) -> Option<&'g S> {
        self.inner.socket(self.guard)
    }

    /// Whether this is the PCB of `pcb`.
    pub fn is(&self, pcb: &Pcb<S>) -> bool {
        std::ptr::eq(self.inner, &*pcb.inner)
    }

    /// Whether two views are of the same PCB.
    pub fn same_pcb(&self, other: &PcbRef<'_, S>) -> bool {
        std::ptr::eq(self.inner, other.inner)
    }
}

impl<S: Send + Sync + 'static> fmt::Debug for PcbRef<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcbRef")
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .field("flags", &self.flags())
            .field("cred", &self.inner.cred())
            .finish()
    }
}

// The PCB is one allocation, and its size must not grow unnoticed. With a
// socket of `()`: 176 bytes (192 with the `Arc`'s counts): the tuple's two
// copies take 80, the port-list link 32 (the PCB's own list node, 24, and
// where it is linked, 8), the exact index's hash and the last IPv6 peer 8
// each. (The link was a 32-byte entry behind a mutex, and the node a
// 24-byte allocation of its own.) Before the socket and the tuple moved
// inline, 104 bytes plus a 40-byte boxed tuple, and the socket in an
// allocation of its own.
