//! Sync tokens: the position of every stream a sync has delivered, as one
//! opaque string `s<events>_<misc>_<typing>`. The first part is also a
//! valid `/messages` pagination token. Positions survive restarts: events
//! and misc positions are stored, and the in-memory typing stream starts
//! above any position handed out before (it starts at the boot time).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    /// Room events (the timeline stream).
    pub events: i64,
    /// Account data, receipts and presence.
    pub misc: i64,
    /// Typing notifications.
    pub typing: i64,
}

impl SyncToken {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix('s')?.split('_');
        let events = parts.next()?.parse().ok()?;
        let misc = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        let typing = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        if parts.next().is_some() {
            return None;
        }
        let token = Self { events, misc, typing };
        (events >= 0 && misc >= 0 && typing >= 0).then_some(token)
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}_{}_{}", self.events, self.misc, self.typing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = SyncToken { events: 5, misc: 7, typing: 1_700_000_000_000 };
        assert_eq!(SyncToken::parse(&t.to_string()), Some(t));
        assert_eq!(SyncToken::parse("s9"), Some(SyncToken { events: 9, misc: 0, typing: 0 }));
        for bad in ["", "x1_2_3", "s1_2_3_4", "s-1_0_0", "sa_b_c"] {
            assert_eq!(SyncToken::parse(bad), None, "{bad}");
        }
    }
}
