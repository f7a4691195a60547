//! The room server: room versions now; PDUs, auth, state groups and the
//! timeline as they land (client-server API "Rooms", server-server API
//! "PDUs", room version specifications).

pub mod versions;
