//! `ServerMetaStore`: values survive and are overwritten.

use std::sync::Arc;

use plexus::storage::Storage;

pub async fn meta_values_are_overwritten(store: Arc<dyn Storage>) {
    assert!(store.get_meta("contract").await.unwrap().is_none());
    store.set_meta("contract", "one".into()).await.unwrap();
    store.set_meta("contract", "two".into()).await.unwrap();
    assert_eq!(store.get_meta("contract").await.unwrap().as_deref(), Some("two"));
    assert!(store.get_meta("other").await.unwrap().is_none());
}
