//! Devices in the private namespace: a second device beside `lo`, and
//! SO_BINDTODEVICE in both worlds.
//!
//! The second device carries no address and no traffic: every packet of a
//! test stays on loopback addresses and arrives on `lo`; the device exists
//! so that sockets can be bound to something other than `lo`. It is a
//! `dummy` device where the kernel has that driver, otherwise an empty
//! bridge (which is just as inert).

use std::ffi::CString;
use std::process::Command;

use pcbhash::Device;

use super::dual::{expect, Pair};
use super::{errno, table_errno};

/// The name of the second device.
pub const SECOND: &str = "dummy0";

/// A device of the namespace: its name and its index.
#[derive(Clone, Copy, Debug)]
pub struct Dev {
    pub name: &'static str,
    pub index: u32,
}

impl Dev {
    /// The table's value for this device.
    pub fn device(self) -> Device {
        Device(self.index)
    }
}

/// The index of the device `name` of the calling thread's namespace.
pub fn index_of(name: &'static str) -> Result<Dev, String> {
    let c_name = CString::new(name).expect("device name");
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the
    // call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(format!("no device {name}"));
    }
    Ok(Dev { name, index })
}

/// Creates [`SECOND`] in the calling thread's namespace (a child process
/// inherits the namespace of the thread that starts it) and brings it up;
/// gives `lo` and it. `Err` says why it could not.
pub fn add_second() -> Result<(Dev, Dev), String> {
    let ip = |args: &[&str]| -> Result<bool, String> {
        Command::new("ip")
            .args(args)
            .output()
            .map(|out| out.status.success())
            .map_err(|e| format!("cannot run ip: {e}"))
    };
    if !ip(&["link", "add", SECOND, "type", "dummy"])?
        && !ip(&["link", "add", SECOND, "type", "bridge"])?
    {
        return Err(format!("cannot create {SECOND} (neither dummy nor bridge)"));
    }
    if !ip(&["link", "set", SECOND, "up"])? {
        return Err(format!("cannot bring {SECOND} up"));
    }
    Ok((index_of("lo")?, index_of(SECOND)?))
}

impl Pair {
    /// SO_BINDTODEVICE in both worlds (`None`: to no device).
    pub fn bind_device(&self, step: &str, dev: Option<Dev>, want: i32) {
        let k = errno(&self.kernel.bind_device(dev.map(|d| d.name.as_bytes())));
        let t = table_errno(&self.table.bind_device(dev.map(Dev::device)));
        expect(step, k, t, want);
        if want == 0 {
            assert_eq!(
                self.table.device(),
                dev.map(Dev::device),
                "{step}: the device"
            );
        }
    }
}
