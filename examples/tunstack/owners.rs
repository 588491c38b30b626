//! Where the stack keeps the owner handles of its PCBs.
//!
//! The table finds a packet's PCB and hands out a `PcbRef`, but acting on
//! the PCB (`accept`, `time_wait`, `close`) needs the owner's `Pcb`, which
//! the stack must keep somewhere. Each socket records the slot of its
//! handle here; packets are never looked up here, only in the table.

/// A slab of owner handles, indexed by slot.
#[derive(Debug)]
pub struct Owners<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Owners<T> {
    fn default() -> Self {
        Owners {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Owners<T> {
    /// The slot the next [`insert`](Self::insert) fills.
    pub fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Keeps `handle`; gives its slot.
    pub fn insert(&mut self, handle: T) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(handle);
                slot
            }
            None => {
                self.slots.push(Some(handle));
                self.slots.len() - 1
            }
        }
    }

    /// The handle in `slot`.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// Takes the handle out of `slot`.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let handle = self.slots.get_mut(slot).and_then(Option::take);
        if handle.is_some() {
            self.free.push(slot);
        }
        handle
    }

    /// How many handles are kept.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes every handle out.
    pub fn drain(&mut self) -> Vec<T> {
        self.free.clear();
        self.slots.drain(..).flatten().collect()
    }
}
