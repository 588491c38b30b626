//! Multicast and broadcast delivery racing the port's members: a PCB that
//! joins the port (binds it), and one that leaves it (closes).

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Family, Policy, Protocol, State};

use crate::fixtures::{addr, builder, cred, Sock};

/// What the writer does while `deliver` walks the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Race {
    /// Binds a second PCB to the port (under Linux it joins the port's
    /// reuseport group).
    Join,
    /// Closes the second PCB, bound to the port beforehand.
    Close,
}

/// `deliver` vs a join or a close on the datagram's port (UDP), under
/// `policy`.
///
/// Two PCBs share `0.0.0.0:5353` with SO_REUSEADDR and SO_REUSEPORT:
/// `stays` (uid 1) is bound throughout; a writer thread binds `moves`
/// (uid 2), or closes it ([`Race`]). The main thread walks `deliver` for a
/// multicast datagram to the port, reading every PCB it yields. Asserts, in
/// every interleaving: `stays` is yielded exactly once; no PCB is yielded
/// twice; every PCB yielded is one of the two, on the port, bound or just
/// closed, with its own fields (a freed PCB would show others), and a
/// socket read under the guard is not dropped before the guard goes;
/// `moves` is yielded if it was bound for the whole walk (its bind returned
/// before the walk began, its close had not begun when it ended), and not
/// if its close returned before the walk began. The walk never blocks: loom
/// fails a model whose threads all wait, and one that spins past its
/// branch limit.
///
/// One writer operation per model keeps each in seconds; the two races
/// together, in one model with a third thread, take minutes.
pub fn deliver_vs_join_or_close(policy: Policy, race: Race) {
    let drops: [Arc<StdAtomicUsize>; 2] = Default::default();
    let table = Arc::new(builder(Protocol::Udp, None).policy(policy).build::<Sock>());
    let port = addr("0.0.0.0:5353");
    let (group, source) = (addr("224.0.0.251:5353"), addr("127.0.0.1:5353"));
    let member = |uid: u32| {
        let pcb = table.attach(Family::Inet, cred(uid), Sock::new(&drops[uid as usize - 1]));
        pcb.set_reuse_addr(true).unwrap();
        pcb.set_reuse_port(true).unwrap();
        pcb
    };
    let (stays, moves) = (member(1), member(2));
    stays.bind(port).unwrap();
    let joined = Arc::new(AtomicBool::new(race == Race::Close));
    let closing = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    if race == Race::Close {
        moves.bind(port).unwrap();
    }

    let writer = {
        let (joined, closing, closed) = (joined.clone(), closing.clone(), closed.clone());
        thread::spawn(move || match race {
            Race::Join => {
                moves.bind(port).unwrap();
                joined.store(true, Ordering::SeqCst);
                Some(moves)
            }
            Race::Close => {
                closing.store(true, Ordering::SeqCst);
                moves.close();
                closed.store(true, Ordering::SeqCst);
                None
            }
        })
    };

    let guard = table.pin();
    let (closed_before, joined_before) =
        (closed.load(Ordering::SeqCst), joined.load(Ordering::SeqCst));
    let mut yielded: Vec<u32> = Vec::new();
    let mut sockets = Vec::new();
    for pcb in table.deliver(None, group, source, &guard) {
        let uid = pcb.cred().uid;
        assert!((1..=2).contains(&uid), "deliver yielded a stranger: {uid}");
        assert!(!yielded.contains(&uid), "deliver yielded PCB {uid} twice");
        yielded.push(uid);
        assert_eq!(pcb.local_addr(), port, "PCB {uid} is not the port's");
        assert!(
            matches!(pcb.state(), State::Bound | State::Dropped),
            "PCB {uid} yielded in state {:?}",
            pcb.state()
        );
        if let Some(socket) = pcb.socket() {
            sockets.push((uid, socket));
        }
    }
    let closing_after = closing.load(Ordering::SeqCst);
    // The guard holds back whatever the close retired.
    for (uid, socket) in sockets {
        assert_eq!(
            socket.drops.load(StdOrdering::SeqCst),
            0,
            "the socket of PCB {uid} was dropped under a guard"
        );
    }
    drop(guard);
    assert!(
        yielded.contains(&1),
        "a PCB bound throughout was not yielded"
    );
    if closed_before {
        assert!(
            !yielded.contains(&2),
            "a PCB closed before the walk was yielded"
        );
    }
    if joined_before && !closing_after {
        assert!(
            yielded.contains(&2),
            "a PCB bound for the whole walk was not yielded"
        );
    }

    let moves = writer.join().unwrap();
    let guard = table.pin();
    let mut after: Vec<u32> = table
        .deliver(None, group, source, &guard)
        .map(|pcb| pcb.cred().uid)
        .collect();
    drop(guard);
    after.sort_unstable();
    let expected: &[u32] = match race {
        Race::Join => &[1, 2],
        Race::Close => &[1],
    };
    assert_eq!(after, expected, "once the writer returned");
    stays.close();
    if let Some(moves) = moves {
        moves.close();
    }
    assert_eq!(table.len(), 0);
    // Released through the epoch: "never twice" is what loom can check here
    // (see `lookup_vs_close`).
    for (n, drops) in drops.iter().enumerate() {
        assert!(
            drops.load(StdOrdering::SeqCst) <= 1,
            "socket {} dropped twice",
            n + 1
        );
    }
}
