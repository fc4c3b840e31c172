//! The transport table: what a transport is (its end and its role), where
//! each new one goes, and handles and their lookup (identity, generation,
//! state, kind).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use slab::Slab;

use super::end::End;
use super::link::FedBy;
use super::name::{Dirs, Name};
use super::receiver::ReceiverSide;
use super::sender::SendSide;
use super::splice::Splice;
use crate::error::{Error, Result};
use crate::token::{Receiver, Sender, Token};
use crate::transport::State;

#[derive(Debug)]
pub(super) struct Transport {
    pub(super) end: End,
    pub(super) role: Role,
}

#[derive(Debug)]
pub(super) enum Role {
    Receiver(ReceiverSide),
    Sender(Box<SendSide>),
}

impl Transport {
    /// The send side of a sender, `None` for a receiver.
    pub(super) fn sender(&mut self) -> Option<&mut SendSide> {
        match &mut self.role {
            Role::Sender(s) => Some(s),
            Role::Receiver(_) => None,
        }
    }

    /// The receiving side of a receiver, `None` for a sender.
    pub(super) fn receiver(&mut self) -> Option<&mut ReceiverSide> {
        match &mut self.role {
            Role::Receiver(r) => Some(r),
            Role::Sender(_) => None,
        }
    }
}

/// Every transport of one proactor, by slot, with each slot's generation.
#[derive(Debug)]
pub(super) struct Table {
    /// The proactor's identity, stamped on every handle.
    id: u32,
    slots: Slab<Transport>,
    generations: Vec<u32>,
    /// The senders opened by path on each FIFO (by device and inode), each
    /// with whether it is the FIFO's sole writer: a new sender is checked
    /// against its FIFO's others alone (a scan of every transport per open
    /// made opening n sole writers quadratic: 3,000 took 3.3 s).
    writers: HashMap<(u64, u64), Vec<(Token, bool)>>,
    /// The directory the next transport's name may share.
    dirs: Dirs,
}

impl Table {
    pub(super) fn new(id: u32) -> Table {
        Table {
            id,
            slots: Slab::new(),
            generations: Vec::new(),
            writers: HashMap::new(),
            dirs: Dirs::default(),
        }
    }

    /// The proactor's identity.
    pub(super) fn id(&self) -> u32 {
        self.id
    }

    /// A sender that writes `fifo` (its device and inode) and would share
    /// it with a sole writer: any sender of it if the new one is (`sole`),
    /// else one that is.
    pub(super) fn shares_with_sole_writer(&self, fifo: (u64, u64), sole: bool) -> Option<Token> {
        let senders = self.writers.get(&fifo)?;
        senders
            .iter()
            .find(|(_, theirs)| sole || *theirs)
            .map(|(token, _)| *token)
    }

    /// Counts sender `token`, just inserted, among the writers of `fifo`
    /// (its sole writer if `sole`), for
    /// [`shares_with_sole_writer`](Self::shares_with_sole_writer).
    pub(super) fn add_writer(&mut self, fifo: (u64, u64), token: Token, sole: bool) {
        self.writers.entry(fifo).or_default().push((token, sole));
    }

    /// The FIFO a sender opened by path writes (an `fstat`), to take it out
    /// of [`writers`](Self::writers) as it goes.
    fn written_fifo(role: &Role, anchor: Option<&OwnedFd>) -> Option<(u64, u64)> {
        match role {
            Role::Sender(_) => crate::fifo::identity(anchor?.as_fd()),
            Role::Receiver(_) => None,
        }
    }

    /// Live transports.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Puts a new transport in the lowest free slot. (Slots stay below
    /// `u32::MAX`: a transport holds an fd, and the kernel's file limit is
    /// far below; the slot `u32::MAX` names the proactor's own operations.)
    pub(super) fn insert(
        &mut self,
        state: State,
        role: Role,
        anchor: Option<OwnedFd>,
        path: Option<&Path>,
    ) -> Token {
        let entry = self.slots.vacant_entry();
        let index = entry.key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let token = Token {
            index: index as u32,
            generation: self.generations[index],
            proactor: self.id,
        };
        let name = path.map(|p| Name::new(p, &mut self.dirs));
        entry.insert(Transport {
            end: End::new(token, state, anchor, name),
            role,
        });
        token
    }

    /// Frees a slot whose transport is closed: its next occupant has a new
    /// generation.
    pub(super) fn remove(&mut self, idx: usize) -> Transport {
        let t = self.slots.remove(idx);
        self.generations[idx] = self.generations[idx].wrapping_add(1);
        if let Some(fifo) = Self::written_fifo(&t.role, t.end.anchor.as_ref())
            && let Some(senders) = self.writers.get_mut(&fifo)
        {
            senders.retain(|(token, _)| *token != t.end.token);
            if senders.is_empty() {
                self.writers.remove(&fifo);
            }
        }
        t
    }

    /// The live transport of `token` (`None`: closed, slot not reused).
    pub(super) fn slot(&self, token: Token) -> Result<Option<&Transport>> {
        if token.proactor != self.id {
            return Err(Error::Foreign {
                token,
                this: self.id,
            });
        }
        let index = token.index as usize;
        let current = *self.generations.get(index).ok_or(Error::Stale { token })?;
        match self.slots.get(index) {
            Some(t) if t.end.token == token => Ok(Some(t)),
            None if token.generation.wrapping_add(1) == current => Ok(None),
            _ => Err(Error::Stale { token }),
        }
    }

    /// Index of a transport that accepts operations (not closing or closed).
    pub(super) fn live(&self, token: Token) -> Result<usize> {
        match self.slot(token)? {
            Some(t) if t.end.state != State::Closing => Ok(token.index as usize),
            _ => Err(Error::Closed { token }),
        }
    }

    /// Index of a live sender. Within one proactor a `Sender` always names
    /// a sender's slot (a reused slot has a new generation); the role is
    /// checked anyway, so no handle can reach the wrong kind of transport.
    pub(super) fn live_sender(&mut self, s: Sender) -> Result<(usize, &mut Transport)> {
        let idx = self.live(s.0)?;
        match self.slots.get_mut(idx) {
            Some(t) if matches!(t.role, Role::Sender(_)) => Ok((idx, t)),
            _ => Err(Error::Stale { token: s.0 }),
        }
    }

    /// Index of a live receiver (see [`live_sender`](Self::live_sender)).
    pub(super) fn live_receiver(&mut self, r: Receiver) -> Result<(usize, &mut Transport)> {
        let idx = self.live(r.0)?;
        match self.slots.get_mut(idx) {
            Some(t) if matches!(t.role, Role::Receiver(_)) => Ok((idx, t)),
            _ => Err(Error::Stale { token: r.0 }),
        }
    }

    pub(super) fn get(&self, idx: usize) -> Option<&Transport> {
        self.slots.get(idx)
    }

    pub(super) fn get_mut(&mut self, idx: usize) -> Option<&mut Transport> {
        self.slots.get_mut(idx)
    }

    /// Receiver `idx`: its end and its receiving side (`None` for a free
    /// slot or a sender).
    pub(super) fn receiver(&self, idx: usize) -> Option<(&End, &ReceiverSide)> {
        match self.slots.get(idx)? {
            Transport {
                end,
                role: Role::Receiver(rx),
            } => Some((end, rx)),
            _ => None,
        }
    }

    /// As [`receiver`](Self::receiver), to change.
    pub(super) fn receiver_mut(&mut self, idx: usize) -> Option<(&mut End, &mut ReceiverSide)> {
        match self.slots.get_mut(idx)? {
            Transport {
                end,
                role: Role::Receiver(rx),
            } => Some((end, rx)),
            _ => None,
        }
    }

    /// Sender `idx`: its end and its send side (`None` for a free slot or
    /// a receiver).
    pub(super) fn sender_mut(&mut self, idx: usize) -> Option<(&mut End, &mut SendSide)> {
        match self.slots.get_mut(idx)? {
            Transport {
                end,
                role: Role::Sender(s),
            } => Some((end, s)),
            _ => None,
        }
    }

    /// The transport of `token` if it is still there.
    pub(super) fn find_mut(&mut self, token: Token) -> Option<&mut Transport> {
        self.slots
            .get_mut(token.index as usize)
            .filter(|t| t.end.token == token)
    }

    /// The two ends of a link: receiver `rx`'s splice, and the side of
    /// sender `tx` if it is still there.
    pub(super) fn link_ends(
        &mut self,
        rx: usize,
        tx: Token,
    ) -> (Option<&mut Splice>, Option<&mut FedBy>) {
        let t = tx.index as usize;
        let both = t != rx
            && self.slots.contains(rx)
            && self.slots.get(t).is_some_and(|d| d.end.token == tx);
        fn splice(r: &mut Transport) -> Option<&mut Splice> {
            r.receiver()?.splice_mut()
        }
        if !both {
            return (self.slots.get_mut(rx).and_then(splice), None);
        }
        match self.slots.get2_mut(rx, t) {
            Some((r, d)) => (splice(r), d.sender().map(|s| &mut s.fed_by)),
            None => (None, None),
        }
    }

    pub(super) fn contains(&self, idx: usize) -> bool {
        self.slots.contains(idx)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Transport> {
        self.slots.iter().map(|(_, t)| t)
    }

    /// Takes every transport out, for a drop that must leak their fds.
    pub(super) fn take_all(&mut self) -> Slab<Transport> {
        std::mem::take(&mut self.slots)
    }
}

impl std::ops::Index<usize> for Table {
    type Output = Transport;

    /// Only with an index the proactor got from the table and holds no
    /// longer than the transport lives (a freed slot panics).
    fn index(&self, idx: usize) -> &Transport {
        &self.slots[idx]
    }
}

impl std::ops::IndexMut<usize> for Table {
    fn index_mut(&mut self, idx: usize) -> &mut Transport {
        &mut self.slots[idx]
    }
}

#[cfg(test)]
mod layout {
    /// One transport per FIFO: its size is most of the proactor's memory
    /// with many idle FIFOs. (Its name is inline: 24 bytes, where a boxed
    /// path took 16 and a heap block of 64 more; a receiver's hang-up poll
    /// and poll for data share a field; its frame decoder and its splice
    /// share one boxed `Feed`, absent for plain `Data`, and its pause is a
    /// flag beside it, so a receiver's side takes 40 bytes.)
    #[test]
    fn a_transport_takes_104_bytes() {
        assert_eq!(std::mem::size_of::<super::ReceiverSide>(), 40);
        assert_eq!(std::mem::size_of::<super::Transport>(), 104);
    }
}
