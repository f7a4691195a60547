//! PDU hash and sign: what every local event costs before it is stored
//! (content hash, redaction, ed25519 signature, reference hash for the
//! event id), with the same ruma calls `rooms::append` makes.

use criterion::{Criterion, criterion_group, criterion_main};
use plexus::ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
    signatures::{Ed25519KeyPair, hash_and_sign_event, reference_hash},
};

/// A message event as `rooms::append` builds it, before hashing.
fn message_pdu() -> CanonicalJsonObject {
    let json = serde_json::json!({
        "auth_events": [
            "$Zk2tWL5H0M9bCwR3NcXlhQ7TyqYfVsPjEoDuGaIxKb8",
            "$Qm4vEo1rRjN8sLkT0pWcHxZyUiBaGdFeY7n2Mv3Ks9w",
            "$Hn5bP2qXcVmL8kJrT1sWyFgZeD0aOuI4iNo7Ev6Rt3Y"
        ],
        "prev_events": ["$Wq8rTy3uIoP1aSdF5gHjK7lZxC9vBnM2eR4tYw6Ui0o"],
        "content": {"msgtype": "m.text", "body": "Lunch at the usual place? I can book a table for six at half past twelve."},
        "depth": 1234,
        "origin_server_ts": 1_764_000_000_000u64,
        "room_id": "!bench:plexus.test",
        "sender": "@alice:plexus.test",
        "type": "m.room.message",
    });
    match CanonicalJsonValue::try_from(json).expect("canonical JSON") {
        CanonicalJsonValue::Object(obj) => obj,
        _ => unreachable!("an object"),
    }
}

fn bench(c: &mut Criterion) {
    let pkcs8 = Ed25519KeyPair::generate();
    let key = Ed25519KeyPair::from_der(&pkcs8, "bench".into()).expect("the key parses");
    let rules = RoomVersionId::V11.rules().expect("v11 is known");
    let pdu = message_pdu();
    c.bench_function("pdu hash+sign+reference hash (v11 message)", |b| {
        b.iter(|| {
            let mut obj = pdu.clone();
            hash_and_sign_event("plexus.test", &key, &mut obj, &rules.redaction).expect("signs");
            let hash = reference_hash(&obj, &rules).expect("hashes");
            std::hint::black_box((hash, obj))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
