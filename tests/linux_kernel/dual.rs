//! Two worlds side by side: a real socket and a table PCB for each socket of
//! a scenario, and checks that both give the expected result.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol};
use socket2::Socket;

use super::{connect, errno, errno_name, socket_as, table_errno, try_accept, Netns};

/// Success.
pub const OK: i32 = 0;

/// A socket in both worlds.
pub struct Pair {
    pub kernel: Socket,
    pub table: Pcb<()>,
    pub uid: u32,
    pub udp: bool,
}

/// One scenario's namespace and table.
pub struct Scene {
    pub ns: Netns,
    pub table: PcbTable<()>,
    udp: bool,
}

impl Scene {
    /// A TCP scene with the ephemeral range `range`, or `None` if no network
    /// namespace can be created and the test is to be skipped
    /// ([`Netns::enter_or_skip`]).
    pub fn new(range: (u16, u16)) -> Option<Scene> {
        Scene::with(Protocol::Tcp, range)
    }

    /// A scene for `protocol`.
    pub fn with(protocol: Protocol, range: (u16, u16)) -> Option<Scene> {
        let ns = Netns::enter_or_skip()?;
        ns.set_port_range(range.0, range.1).expect("port range");
        let table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .protocol(protocol)
            .ephemeral_ports(range.0..=range.1)
            .seed(11)
            .build();
        Some(Scene {
            ns,
            table,
            udp: protocol == Protocol::Udp,
        })
    }

    pub fn socket(&self, v6: bool, uid: u32) -> Pair {
        let family = if v6 { Family::Inet6 } else { Family::Inet };
        Pair {
            kernel: socket_as(uid, v6, self.udp).expect("socket"),
            table: self.table.attach(family, Cred::user(uid), ()),
            uid,
            udp: self.udp,
        }
    }

    /// A socket with SO_REUSEADDR / SO_REUSEPORT as asked.
    pub fn socket_with(&self, v6: bool, uid: u32, reuse_addr: bool, reuse_port: bool) -> Pair {
        let pair = self.socket(v6, uid);
        pair.kernel
            .set_reuse_address(reuse_addr)
            .expect("SO_REUSEADDR");
        pair.kernel
            .set_reuse_port(reuse_port)
            .expect("SO_REUSEPORT");
        pair.table.set_reuse_addr(reuse_addr).expect("SO_REUSEADDR");
        pair.table.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        pair
    }

    /// Waits until the kernel has a TIME_WAIT socket on `port`.
    pub fn await_time_wait(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ns.tcp_sockets_in_state("06", port) == 0 {
            assert!(
                Instant::now() < deadline,
                "no TIME_WAIT socket appeared on port {port}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Checks that the kernel and the table both gave `want`.
pub fn expect(step: &str, kernel: i32, table: i32, want: i32) {
    assert!(
        kernel == want && table == want,
        "{step}: expected {}, the kernel gave {}, the table {}",
        errno_name(want),
        errno_name(kernel),
        errno_name(table)
    );
}

impl Pair {
    pub fn bind(&self, step: &str, to: &str, port: u16, want: i32) {
        let at = SocketAddr::new(to.parse().expect("address"), port);
        let k = errno(&self.kernel.bind(&at.into()));
        let t = table_errno(&self.table.bind(at));
        expect(step, k, t, want);
    }

    pub fn listen(&self, step: &str, want: i32) {
        let k = errno(&self.kernel.listen(16));
        let t = table_errno(&self.table.listen());
        expect(step, k, t, want);
    }

    pub fn connect(&self, step: &str, to: SocketAddr, want: i32) -> Option<SocketAddr> {
        let k = if self.udp {
            errno(&self.kernel.connect(&to.into()))
        } else {
            errno(&connect(&self.kernel, to))
        };
        let t = self.table.connect(to);
        expect(step, k, table_errno(&t), want);
        t.ok()
    }

    /// The server side of the connection from `client` (at `from`) to `to`.
    pub fn accept(&self, to: SocketAddr, from: SocketAddr) -> Pair {
        let mut kernel = None;
        for _ in 0..500 {
            if let Some((socket, _)) = try_accept(&self.kernel, self.uid) {
                kernel = Some(socket);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let table = self.table.accept(to, from, ()).expect("table accept");
        Pair {
            kernel: kernel.expect("the kernel has the connection"),
            table,
            uid: self.uid,
            udp: self.udp,
        }
    }

    /// IPV6_V6ONLY in both worlds.
    pub fn set_v6only(&self, on: bool) {
        self.kernel.set_only_v6(on).expect("IPV6_V6ONLY");
        self.table.set_v6only(on).expect("IPV6_V6ONLY");
    }

    /// SO_REUSEADDR in both worlds.
    pub fn set_reuse_addr(&self, on: bool) {
        self.kernel.set_reuse_address(on).expect("SO_REUSEADDR");
        self.table.set_reuse_addr(on).expect("SO_REUSEADDR");
    }

    /// SO_REUSEPORT in both worlds.
    pub fn set_reuse_port(&self, on: bool) {
        self.kernel.set_reuse_port(on).expect("SO_REUSEPORT");
        self.table.set_reuse_port(on).expect("SO_REUSEPORT");
    }

    /// `connect(AF_UNSPEC)` in both worlds.
    pub fn disconnect(&self, step: &str, want: i32) {
        let k = errno(&super::disconnect(&self.kernel));
        let t = table_errno(&self.table.disconnect());
        expect(step, k, t, want);
    }

    /// The local address, which must be the same in both worlds; `None`
    /// while the table says the PCB holds no port.
    pub fn local(&self, step: &str) -> Option<SocketAddr> {
        let table = self.table.local_addr()?;
        let kernel = super::local_addr(&self.kernel).expect("kernel local address");
        assert_eq!(kernel, table, "{step}: local addresses differ");
        Some(table)
    }

    /// Closes first (the active close): this side ends in TIME_WAIT once the
    /// other side closes too.
    pub fn close_first(self) -> Pcb<()> {
        drop(self.kernel);
        self.table.time_wait().expect("TIME_WAIT");
        self.table
    }

    /// Closes second (the passive close).
    pub fn close(self) {
        drop(self.kernel);
        drop(self.table);
    }
}

/// A listener bound to `ip` and `port` with the given options; returns it
/// and the address to connect to. (Servers use fixed ports, and the
/// ephemeral range has one or two ports, so that every port the kernel
/// picks is determined: connect() takes the even one first, bind(0) the odd
/// one.)
pub fn listener(
    scene: &Scene,
    v6: bool,
    uid: u32,
    (ip, port): (&str, u16),
    reuse: (bool, bool),
) -> (Pair, SocketAddr) {
    let server = scene.socket_with(v6, uid, reuse.0, reuse.1);
    server.bind("server bind", ip, port, OK);
    server.listen("server listen", OK);
    let to_ip = if ip == "0.0.0.0" { "127.0.0.1" } else { ip };
    (server, SocketAddr::new(to_ip.parse().expect("ip"), port))
}
