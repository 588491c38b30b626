//! Demultiplexes a small synthetic workload through a `PcbTable`.
//!
//! Run with `cargo run --release --example demux`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pcbhash::{Cred, Family, PcbTable};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table: PcbTable<u32> = PcbTable::new();
    let listener = table.attach(Family::Inet, Cred::ROOT, Arc::new(0));
    let service: SocketAddr = "127.0.0.1:8080".parse()?;
    listener.bind(service)?;
    listener.listen()?;

    let flows = 10_000u32;
    let mut conns = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let peer = SocketAddr::from((
            [127, 1, (i >> 8) as u8, i as u8],
            40_000 + (i % 20_000) as u16,
        ));
        conns.push((peer, listener.accept(service, peer, Arc::new(i + 1))?));
    }

    let start = Instant::now();
    let guard = table.pin();
    let mut found = 0u64;
    let rounds = 100;
    for _ in 0..rounds {
        for (peer, conn) in &conns {
            let pcb = table.lookup(service, *peer, &guard).expect("a live flow");
            found += u64::from(pcb.is(conn));
        }
    }
    let stray_to_listener = table
        .lookup(service, "127.9.9.9:9".parse()?, &guard)
        .is_some_and(|pcb| pcb.is(&listener));
    drop(guard);
    let elapsed = start.elapsed();
    let lookups = u64::from(flows) * rounds;
    println!(
        "{lookups} lookups in {elapsed:?} ({:.1} M lookups/s)",
        lookups as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("flows found their own PCB: {found}/{lookups}");
    println!("a stray SYN went to the listener: {stray_to_listener}");
    println!("{:#?}", table.stats());
    assert_eq!(found, lookups);
    Ok(())
}
