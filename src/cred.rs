//! Who owns a PCB and where it is scoped: the credential it was created
//! with, and the device it may be bound to. A leaf module: every layer may
//! use it, and it uses nothing of the crate.

/// The credential a PCB was created with (FreeBSD `inp_cred`, Linux `sk_uid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Cred {
    /// The owner's user id. Sharing a port with SO_REUSEPORT needs equal uids.
    pub uid: u32,
    /// Whether the owner may bind ports below 1024 (and, on FreeBSD, share a
    /// port with another uid's PCB: `PRIV_NETINET_REUSEPORT`).
    pub privileged: bool,
}

impl Cred {
    /// The superuser: uid 0, privileged.
    pub const ROOT: Cred = Cred {
        uid: 0,
        privileged: true,
    };

    /// An unprivileged user.
    pub fn user(uid: u32) -> Cred {
        Cred {
            uid,
            privileged: false,
        }
    }
}

/// A network device (interface), by its index (`if_nametoindex`); never 0.
///
/// Under `Policy::Linux` it is the device of `SO_BINDTODEVICE` and of a
/// packet's arrival; under `Policy::FreeBsd` it stands for the FIB number a
/// PCB and a packet belong to (`SO_SETFIB`), where 0 is a FIB too, the
/// default one (see [`Builder::bind_all_fibs`](crate::Builder::bind_all_fibs)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device(pub u32);
