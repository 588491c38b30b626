//! The example's socket type: what the table hands back to the stack.
//!
//! A real stack's socket holds buffers, a receive queue and a wakeup handle.
//! Here it only says whose it is, which is what the invariant checks need: a
//! packet of a live flow must reach that flow's own socket.

/// The stack's socket, the `S` of `PcbTable<S>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// A listening socket: its index in the workload's listener list.
    Listener(usize),
    /// A connection: the flow slot and the generation of the flow in it.
    Flow {
        /// The slot.
        slot: u32,
        /// The slot's flow counter when this flow was opened.
        generation: u32,
    },
    /// A socket of the capture replay: its serial number.
    Replay(u64),
}
