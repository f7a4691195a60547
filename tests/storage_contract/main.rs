//! The storage contract: what every storage backend must do, written once
//! against the traits of `plexus::storage` (each contract is a function
//! taking an `Arc<dyn Storage>`, one module per trait), and run here
//! against SQLite. Another backend adds an `open_*` function and one
//! `contract_tests!` line. The guarantees tested are those the traits'
//! docs state.

mod accounts;
mod appservice;
mod backup;
mod delayed_events;
mod directory;
mod e2ee;
mod events;
mod federation;
mod fixtures;
mod media;
mod membership;
mod push;
mod pushers;
mod relations;
mod reports;
mod search;
mod server_meta;
mod state;
mod streams;
mod sync;

use std::sync::Arc;

use plexus::{
    config::StorageConfig,
    storage::{SqliteStore, Storage},
};

/// A backend under test, closed when the test ends.
pub struct Backend {
    pub store: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.store.close();
    }
}

/// A fresh SQLite store in a temporary directory.
fn open_sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("contract.db"), &StorageConfig::default()).expect("SQLite opens");
    Backend { store: Arc::new(store), _dir: dir }
}

/// One test per contract, per backend: `contract_tests!(name, open; module: [contract, ...], ...)`.
macro_rules! contract_tests {
    ($backend:ident, $open:path; $($module:ident: [$($contract:ident),* $(,)?]),* $(,)?) => {
        mod $backend {
            $(
                mod $module {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                        async fn $contract() {
                            let backend = $open();
                            crate::$module::$contract(backend.store.clone()).await;
                        }
                    )*
                }
            )*
        }
    };
}

contract_tests!(sqlite, crate::open_sqlite;
    appservice: [transactions_keep_their_id_and_items_until_completed],
    accounts: [
        users_are_created_once,
        registration_token_uses_are_bounded,
        access_tokens_are_found_and_retired,
        devices_round_trip,
        profile_fields_are_set_and_removed,
        openid_tokens_expire_and_go,
    ],
    events: [
        timeline_reads_follow_positions,
        transaction_ids_are_idempotent,
        queued_appends_keep_order,
        stale_heads_are_refused,
        event_positions_are_never_seen_out_of_order,
        outliers_stay_out_of_the_timeline,
        backfill_goes_below_every_position,
        redactions_rewrite_their_target,
        a_failing_append_changes_nothing,
    ],
    delayed_events: [
        schedules_respect_transactions_and_the_cap,
        a_scheduled_event_is_claimed_once,
        a_state_event_cancels_only_other_users_delayed_state,
    ],
    state: [
        state_group_deltas_resolve,
        current_state_follows_appends,
    ],
    membership: [
        memberships_follow_member_events,
        remote_invites_round_trip,
    ],
    push: [
        notifications_page_newest_first_with_their_read_flag,
        threaded_receipts_read_only_their_thread,
    ],
    relations: [
        relations_are_paged_and_filtered,
        summaries_leave_out_redacted_relations,
        thread_roots_follow_latest_activity,
    ],
    reports: [
        reports_round_trip_newest_first,
        reports_are_resolved_once,
    ],
    pushers: [
        pushers_are_set_updated_and_replaced,
        pushers_go_with_their_device,
        queues_are_fifo_per_pusher,
    ],
    search: [
        indexed_events_are_found_in_their_rooms_until_taken_out,
        the_directory_finds_members_of_shared_rooms_only,
    ],
    streams: [
        account_data_is_overwritten,
        misc_positions_are_never_seen_out_of_order,
        receipts_replace_per_type_and_thread,
        presence_is_overwritten,
        filter_ids_are_distinct,
    ],
    e2ee: [
        one_time_key_claims_are_atomic,
        one_time_key_uploads_are_all_or_nothing,
        device_identity_keys_never_change,
        to_device_messages_are_idempotent_and_deleted_on_ack,
        cross_signing_keys_are_replaced,
        device_writes_record_device_list_changes,
        device_updates_form_one_stream_per_user,
        remote_device_lists_are_replaced,
    ],
    backup: [
        backup_versions_are_never_reused,
        the_better_backup_key_wins,
    ],
    media: [
        media_metadata_round_trips,
        reserved_media_is_filled_once,
        the_remote_cache_evicts_the_least_recently_used,
    ],
    federation: [
        the_queue_is_fifo_and_emptied_on_ack,
        appended_pdus_are_queued_with_their_event,
        server_keys_round_trip,
        received_transactions_are_remembered,
    ],
    directory: [
        an_alias_names_one_room,
        public_rooms_are_listed_by_size,
    ],
    server_meta: [
        meta_values_are_overwritten,
    ],
    sync: [
        room_reads_stay_within_their_ranges,
        user_reads_report_what_changed,
    ],
);
