//! Hubs driven by a core (filled in below).

use std::time::{Duration, Instant};

use ringpipe::{Event, Proactor};

use crate::core::Core;

pub struct HubStream;

pub fn close_all(_core: &mut Core, _limit: Duration) {}
pub fn deadlines(_core: &Core) -> impl Iterator<Item = Instant> + '_ {
    std::iter::empty()
}
pub fn after_poll(_core: &mut Core) {}
pub fn event(_hubs: &mut [HubStream], _p: &mut Proactor, _event: &Event<'_>) {}
pub fn check_deadlines(_core: &mut Core, _now: Instant) {}
pub fn fail_all(_core: &mut Core, _error: &crate::errors::ErrSpec) {}
