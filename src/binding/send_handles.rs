//! The table behind `fast_send`'s handles: a connection's handle is a
//! number, an index into this table plus a generation that changes
//! whenever the slot is given back, so a stale or made-up handle finds
//! nothing instead of reaching freed memory. One table per loop (the loop
//! owns it, `Loop::send_handles`).

use std::rc::{Rc, Weak};

use crate::engine::connection::Shared;

/// Bits of a handle for the slot index: up to 16 million connections per
/// thread have a handle (more get none and use `conn:send`).
const INDEX_BITS: u32 = 24;
/// Generations wrap within 29 bits, so a handle fits a Lua number
/// (53 bits) exactly.
const GENERATION_MASK: u64 = (1 << 29) - 1;

#[derive(Default)]
struct Slot {
    generation: u64,
    shared: Option<Weak<Shared>>,
}

/// The open connections of this thread that have a handle.
#[derive(Default)]
pub struct Handles {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

impl Handles {
    pub fn insert(&mut self, shared: Weak<Shared>) -> Option<u64> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < 1 << INDEX_BITS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[index];
        slot.shared = Some(shared);
        Some(slot.generation << INDEX_BITS | index as u64)
    }

    fn slot(&self, handle: u64) -> Option<(usize, &Slot)> {
        let index = (handle & ((1 << INDEX_BITS) - 1)) as usize;
        let slot = self.slots.get(index)?;
        (slot.generation == handle >> INDEX_BITS).then_some((index, slot))
    }

    pub fn get(&self, handle: u64) -> Option<Rc<Shared>> {
        self.slot(handle)?.1.shared.as_ref()?.upgrade()
    }

    pub fn release(&mut self, handle: u64) {
        let Some((index, _)) = self.slot(handle) else { return };
        let slot = &mut self.slots[index];
        slot.shared = None;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_handle_finds_nothing_even_when_its_slot_is_reused() {
        let mut table = Handles::default();
        let first = table.insert(Weak::new()).expect("a slot");
        table.release(first);
        let second = table.insert(Weak::new()).expect("a slot");
        assert_eq!(first & ((1 << INDEX_BITS) - 1), second & ((1 << INDEX_BITS) - 1), "slot reused");
        assert_ne!(first, second, "with another generation");
        assert!(table.slot(first).is_none());
        assert!(table.slot(second).is_some());
        // Releasing a stale handle leaves the new owner alone.
        table.release(first);
        assert!(table.slot(second).is_some());
    }

    #[test]
    fn unknown_handles_find_nothing() {
        let mut table = Handles::default();
        table.insert(Weak::new()).expect("a slot");
        assert!(table.get(0).is_none());
        assert!(table.get(12345).is_none());
    }
}
