//! Sliding sync's room lists (MSC4186, "Lists"): the user's rooms ordered
//! by recent activity, each list's filters over them, its `count`, and the
//! rooms its ranges select. Pure: the assembler reads what they work from.

use std::collections::HashSet;

use ruma::{OwnedRoomId, UInt, api::client::sync::sync_events::v5::request::ListFilters};

/// The user's membership of a room in the server's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMembership {
    Join,
    Invite,
    Knock,
    /// Left, kicked or banned.
    Leave,
}

/// One of the user's rooms, as lists see it.
#[derive(Debug, Clone)]
pub struct ListRoom {
    pub room_id: OwnedRoomId,
    pub membership: ListMembership,
    /// Recent activity: greater is more recent.
    pub bump_stamp: i64,
    pub is_dm: bool,
    pub is_encrypted: bool,
    /// The create event's `type`.
    pub room_type: Option<String>,
}

/// Orders rooms by recent activity, the most recent first (ties by room id,
/// so the order is stable).
pub fn order_by_activity(rooms: &mut [ListRoom]) {
    rooms.sort_by(|a, b| b.bump_stamp.cmp(&a.bump_stamp).then_with(|| a.room_id.cmp(&b.room_id)));
}

/// A list's filters (all must hold; an absent one does not filter).
/// `spaces`: the rooms the listed spaces name as children, if given.
pub fn passes(room: &ListRoom, filters: &ListFilters, space_children: Option<&HashSet<OwnedRoomId>>) -> bool {
    let invited = room.membership == ListMembership::Invite;
    filters.is_dm.is_none_or(|dm| dm == room.is_dm)
        && filters.is_encrypted.is_none_or(|enc| enc == room.is_encrypted)
        && filters.is_invite.is_none_or(|inv| inv == invited)
        && (filters.room_types.is_empty() || filters.room_types.iter().any(|t| t.as_str() == room.room_type.as_deref()))
        && !filters.not_room_types.iter().any(|t| t.as_str() == room.room_type.as_deref())
        && space_children.is_none_or(|children| children.contains(&room.room_id))
}

/// The indexes (into the filtered, ordered list) the ranges select,
/// inclusive at both ends, each once; without ranges, every room (MSC4186:
/// a list without a range is not limited by one).
pub fn in_ranges(ranges: &[(UInt, UInt)], len: usize) -> Vec<usize> {
    if ranges.is_empty() {
        return (0..len).collect();
    }
    let mut selected = vec![false; len];
    for (start, end) in ranges {
        let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
        let end = usize::try_from(u64::from(*end)).unwrap_or(usize::MAX).min(len.saturating_sub(1));
        if len == 0 || start > end {
            continue;
        }
        selected[start..=end].iter_mut().for_each(|s| *s = true);
    }
    selected.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use ruma::{directory::RoomTypeFilter, uint};

    use super::*;

    fn room(id: &str, bump_stamp: i64, membership: ListMembership) -> ListRoom {
        ListRoom {
            room_id: OwnedRoomId::try_from(id).unwrap(),
            membership,
            bump_stamp,
            is_dm: false,
            is_encrypted: false,
            room_type: None,
        }
    }

    #[test]
    fn most_recent_activity_first() {
        let mut rooms = vec![
            room("!a:x", 5, ListMembership::Join),
            room("!b:x", 9, ListMembership::Join),
            room("!c:x", 5, ListMembership::Invite),
        ];
        order_by_activity(&mut rooms);
        let ids: Vec<&str> = rooms.iter().map(|r| r.room_id.as_str()).collect();
        assert_eq!(ids, ["!b:x", "!a:x", "!c:x"]);
    }

    #[test]
    fn filters_combine() {
        let mut space = room("!s:x", 1, ListMembership::Join);
        space.room_type = Some("m.space".into());
        let mut dm = room("!d:x", 1, ListMembership::Join);
        dm.is_dm = true;
        dm.is_encrypted = true;
        let invite = room("!i:x", 1, ListMembership::Invite);

        let mut f = ListFilters::default();
        f.not_room_types = vec![RoomTypeFilter::Space];
        assert!(!passes(&space, &f, None));
        assert!(passes(&dm, &f, None));
        f.is_dm = Some(true);
        f.is_encrypted = Some(true);
        assert!(passes(&dm, &f, None));
        assert!(!passes(&invite, &f, None));

        let mut f = ListFilters::default();
        f.is_invite = Some(true);
        assert!(passes(&invite, &f, None) && !passes(&dm, &f, None));
        let mut f = ListFilters::default();
        f.room_types = vec![RoomTypeFilter::Default];
        assert!(passes(&dm, &f, None) && !passes(&space, &f, None));

        let children = HashSet::from([dm.room_id.clone()]);
        assert!(passes(&dm, &ListFilters::default(), Some(&children)));
        assert!(!passes(&invite, &ListFilters::default(), Some(&children)));
    }

    #[test]
    fn ranges_are_inclusive_and_clamped() {
        assert_eq!(in_ranges(&[(uint!(0), uint!(2))], 10), [0, 1, 2]);
        assert_eq!(in_ranges(&[(uint!(0), uint!(1)), (uint!(1), uint!(3))], 3), [0, 1, 2]);
        assert_eq!(in_ranges(&[(uint!(5), uint!(9))], 3), Vec::<usize>::new());
        assert_eq!(in_ranges(&[(uint!(0), uint!(19))], 0), Vec::<usize>::new());
        assert_eq!(in_ranges(&[], 3), [0, 1, 2], "no range: the whole list");
    }
}
