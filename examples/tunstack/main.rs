//! `tunstack`: a user-space TCP/UDP endpoint whose every socket is a PCB in
//! a pcbhash table, served over a TUN device to the kernel's own clients.
//!
//! ```text
//! sudo cargo run --release --example tunstack                  # ~1,000 connections and the rest
//! sudo cargo run --release --example tunstack -- --serve 60    # then keep serving for a minute
//! ```
//!
//! It moves into a private network namespace (the host's network is never
//! touched), creates a TUN device there with TEST-NET addresses on the
//! kernel's side (192.0.2.2/24, 2001:db8::2/64) and answers as 192.0.2.1
//! and 2001:db8::1: TCP echo on port 7, an HTTP/1.0 page on port 80, UDP
//! echo on port 7, a bound and a connected UDP socket on port 9000. Then,
//! from the kernel side of the same namespace, it runs TCP echo
//! connections, `curl`, UDP echo, broadcast, a connect to a closed port and
//! active opens from the stack to a kernel-side server, checking every
//! byte; and prints a summary. It exits with status 1 if a check failed,
//! and with status 2 if it cannot set up (not root, no `/dev/net/tun`).
//!
//! The modules are listed in `endpoint.rs`.

#[cfg(target_os = "linux")]
#[path = "endpoint.rs"]
mod endpoint;

#[cfg(target_os = "linux")]
use clap::Parser;
#[cfg(target_os = "linux")]
use endpoint::{drive, link, stack};

/// A user-space TCP/UDP endpoint on pcbhash, over TUN, in a private
/// network namespace.
#[cfg(target_os = "linux")]
#[derive(Parser, Debug)]
struct Args {
    /// TCP echo connections to run from the kernel side.
    #[arg(long, default_value_t = 1_000)]
    connections: u64,
    /// How many of them run at once.
    #[arg(long, default_value_t = 8)]
    parallel: u64,
    /// After the checks, keep serving this many seconds (for clients
    /// started with `nsenter` into the namespace).
    #[arg(long, default_value_t = 0)]
    serve: u64,
    /// The shortened 2MSL, in milliseconds (a kernel waits 60 s).
    #[arg(long, default_value_t = 1_000)]
    two_msl_ms: u64,
}

#[cfg(target_os = "linux")]
fn main() {
    use std::time::Duration;

    let args = Args::parse();
    if let Err(e) = link::enter_private_namespace() {
        eprintln!("tunstack: {e}");
        std::process::exit(2);
    }
    let config = stack::Config {
        two_msl: Duration::from_millis(args.two_msl_ms),
        progress: Some(Duration::from_secs(1)),
    };
    println!(
        "tunstack: TIME_WAIT lasts {:?} here (2MSL shortened; a kernel waits 60 s)",
        config.two_msl
    );
    let handle = match stack::start(config) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("tunstack: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "tunstack: serving as {} and {} on a TUN device in a private namespace",
        link::STACK_V4,
        link::STACK_V6
    );
    let report = drive::drive(&handle, args.connections, args.parallel.max(1));
    if args.serve > 0 {
        // The main thread entered the namespace; /proc/PID/ns/net is its.
        println!(
            "tunstack: serving {} s more; from another shell: \
             nsenter --net=/proc/{}/ns/net curl http://{}/",
            args.serve,
            std::process::id(),
            link::STACK_V4
        );
        std::thread::sleep(Duration::from_secs(args.serve));
    }
    let summary = handle.shutdown();
    print!("{summary}");
    let failed = !report.failures.is_empty() || summary.left != (0, 0);
    if failed {
        eprintln!("tunstack: {} checks failed", report.failures.len());
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tunstack: Linux only (network namespaces and TUN devices)");
    std::process::exit(2);
}
