//! The scenarios. Each sets up its users and rooms through the API, then
//! measures, and returns a human summary and one JSON line.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::{
    Cli, Transport, WAIT_LIMIT,
    client::{User, http_client, process_memory, register, room_list_request, run_prefix},
    stats::{describe, summary},
};

pub struct Outcome {
    pub summary: String,
    pub json: Value,
}

fn outcome(cli: &Cli, scenario: &str, summary: String, mut data: Value) -> Outcome {
    data["scenario"] = json!(scenario);
    data["server"] = json!(cli.label);
    data["transport"] = json!(format!("{:?}", cli.transport).to_lowercase());
    Outcome { summary: format!("[{}] {scenario}: {summary}", cli.label), json: data }
}

/// Registers `n` users concurrently (bounded).
async fn register_many(cli: &Cli, prefix: &str, n: usize) -> anyhow::Result<Vec<User>> {
    let http = http_client();
    let mut users = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut tasks = Vec::new();
        for i in chunk {
            let (cli, http, name) = (cli.clone(), http.clone(), format!("{prefix}u{i}"));
            tasks.push(tokio::spawn(async move { register(&cli, &http, &name).await }));
        }
        for t in tasks {
            users.push(t.await??);
        }
    }
    Ok(users)
}

pub async fn latency(cli: &Cli, messages: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 2).await?;
    let (a, b) = (&users[0], &users[1]);
    let room = a.create_room(true).await?;
    b.join(&room).await?;
    let deadline = Instant::now() + WAIT_LIMIT + Duration::from_secs(messages as u64);
    let mut arrivals = b.watch(cli.transport, deadline).await?;
    let mut send_times = Vec::with_capacity(messages);
    let mut e2e = Vec::with_capacity(messages);
    for i in 0..messages {
        let start = Instant::now();
        let event_id = a.send(&room, &format!("latency {i}")).await?;
        send_times.push(start.elapsed());
        let wait_until = Instant::now() + WAIT_LIMIT;
        loop {
            let (id, at) = tokio::time::timeout_at(wait_until.into(), arrivals.recv())
                .await
                .context("a message never arrived")?
                .context("the sync loop ended")?;
            if id == event_id {
                e2e.push(at.duration_since(start));
                break;
            }
        }
    }
    let send = summary(&send_times);
    let end_to_end = summary(&e2e);
    let text = format!("{}; {}", describe("send", &send), describe("end-to-end", &end_to_end));
    Ok(outcome(cli, "latency", text, json!({"messages": messages, "send": send, "e2e": end_to_end})))
}

pub async fn fanout(cli: &Cli, members: usize, rate: f64, messages: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, members + 1).await?;
    let sender = &users[0];
    let room = sender.create_room(true).await?;
    for u in &users[1..] {
        u.join(&room).await?;
    }
    eprintln!("fanout: {members} members joined; starting their sync loops");
    let sending = Duration::from_secs_f64(messages as f64 / rate);
    // Starting a member's sync loop takes a first sync; the delivery
    // deadline counts from when all of them run.
    let watch_until = Instant::now() + 2 * WAIT_LIMIT + sending + Duration::from_secs(1) * members as u32;
    let mut receivers = Vec::new();
    for u in &users[1..] {
        receivers.push(u.watch(cli.transport, watch_until).await?);
    }
    let deadline = Instant::now() + WAIT_LIMIT + sending;
    eprintln!("fanout: every sync loop runs; sending");
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut collectors = Vec::new();
    for mut rx in receivers {
        let sent = sent.clone();
        collectors.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Ok(Some((id, at))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                if let Some(start) = sent.lock().await.get(&id) {
                    latencies.push(at.duration_since(*start));
                    if latencies.len() == messages {
                        break;
                    }
                }
            }
            latencies
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    for i in 0..messages {
        ticker.tick().await;
        let start = Instant::now();
        let mut guard = sent.lock().await;
        let event_id = sender.send(&room, &format!("fanout {i}")).await?;
        guard.insert(event_id, start);
    }
    let mut all = Vec::new();
    for c in collectors {
        all.extend(c.await?);
    }
    let expected = members * messages;
    let missed = expected.saturating_sub(all.len());
    let s = summary(&all);
    let text = format!("{} members, {rate}/s: {}; missed {missed}", members, describe("delivery", &s));
    Ok(outcome(
        cli,
        "fanout",
        text,
        json!({"members": members, "rate": rate, "messages": messages, "delivery": s, "missed": missed}),
    ))
}

pub async fn throughput(cli: &Cli, pairs: usize, in_flight: usize, seconds: u64) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, pairs * 2).await?;
    let run_for = Duration::from_secs(seconds);
    let deadline = Instant::now() + run_for + WAIT_LIMIT;
    let mut senders = Vec::new();
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for p in 0..pairs {
        let (s, r) = (users[2 * p].clone(), users[2 * p + 1].clone());
        let room = s.create_room(true).await?;
        r.join(&room).await?;
        let mut rx = r.watch(cli.transport, deadline).await?;
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Ok(Some(_)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        senders.push((s, room));
    }
    let start = Instant::now();
    let stop_at = start + run_for;
    let mut workers = Vec::new();
    for (s, room) in &senders {
        for w in 0..in_flight {
            let (s, room) = (s.clone(), room.clone());
            workers.push(tokio::spawn(async move {
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut i = 0u64;
                while Instant::now() < stop_at {
                    match s.send(&room, &format!("t{w}-{i}")).await {
                        Ok(_) => ok += 1,
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                (ok, errors)
            }));
        }
    }
    let (mut accepted, mut errors) = (0u64, 0u64);
    for w in workers {
        let (ok, err) = w.await?;
        accepted += ok;
        errors += err;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let deliveries of the last sends drain (bounded), then count them.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until && delivered.load(std::sync::atomic::Ordering::Relaxed) < accepted {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = delivered.load(std::sync::atomic::Ordering::Relaxed);
    let text = format!(
        "{pairs} pairs x {in_flight} in flight for {seconds}s: {:.0} accepted/s, {:.0} delivered/s, {errors} errors",
        accepted as f64 / elapsed,
        delivered as f64 / elapsed
    );
    Ok(outcome(
        cli,
        "throughput",
        text,
        json!({"pairs": pairs, "in_flight": in_flight, "seconds": seconds, "accepted": accepted,
               "accepted_per_s": accepted as f64 / elapsed, "delivered_per_s": delivered as f64 / elapsed, "errors": errors}),
    ))
}

pub async fn idle(cli: &Cli, connections: usize, seconds: u64) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 1).await?;
    let user = users[0].clone();
    user.create_room(false).await?;
    let first = user.sync(None, 0, None).await?;
    let since = first["next_batch"].as_str().context("next_batch")?.to_owned();
    // Let the server settle first: memory freed after registering (a
    // password hash's buffers) may go back to the system only a little
    // later, and counting it in `before` would flatter the figure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cli.server_pid.and_then(process_memory);
    let hold = Duration::from_secs(seconds);
    let mut held = Vec::with_capacity(connections);
    // Each connection is its own HTTP client, so each sync holds a socket.
    for i in 0..connections {
        let user = User { http: reqwest::Client::new(), ..user.clone() };
        let since = since.clone();
        let timeout_ms = (hold.as_millis() as u64) + 5_000;
        match cli.transport {
            crate::Transport::Longpoll => {
                held.push(tokio::spawn(async move { user.sync(Some(&since), timeout_ms, None).await.map(|_| ()) }))
            }
            crate::Transport::Ws => {
                let url = format!(
                    "{}/_matrix/client/unstable/io.plexus.websocket/sync?since={since}&access_token={}",
                    user.base.replace("http", "ws"),
                    user.token
                );
                let socket = tokio_tungstenite::connect_async(url).await.with_context(|| format!("websocket {i}"))?;
                held.push(tokio::spawn(async move {
                    tokio::time::sleep(hold + Duration::from_secs(1)).await;
                    drop(socket);
                    Ok(())
                }));
            }
        }
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(hold).await;
    let during = cli.server_pid.and_then(process_memory);
    for h in held {
        h.abort();
    }
    let per_conn = match (before, during) {
        (Some((b, _)), Some((d, _))) => Some((d.saturating_sub(b)) as f64 / connections as f64),
        _ => None,
    };
    let text = format!(
        "{connections} held for {seconds}s: RSS before {:?} kB, during {:?} kB, {:.2} kB per connection",
        before.map(|m| m.0),
        during.map(|m| m.0),
        per_conn.unwrap_or(f64::NAN)
    );
    Ok(outcome(
        cli,
        "idle",
        text,
        json!({"connections": connections, "seconds": seconds, "rss_before_kb": before.map(|m| m.0),
               "rss_during_kb": during.map(|m| m.0), "kb_per_connection": per_conn}),
    ))
}

pub async fn initial_sync(cli: &Cli, rooms: usize, events: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 1).await?;
    let user = users[0].clone();
    let mut room_ids = Vec::new();
    for _ in 0..rooms {
        room_ids.push(user.create_room(false).await?);
    }
    for chunk in room_ids.chunks(8) {
        let mut tasks = Vec::new();
        for room in chunk {
            let (user, room) = (user.clone(), room.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..events {
                    user.send(&room, &format!("history {i}")).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let mut syncs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        user.sync(None, 0, None).await?;
        syncs.push(start.elapsed());
    }
    // /messages over 1,000 events: one room with 1,000 messages, paged by 100.
    let big = user.create_room(false).await?;
    for i in 0..1000 {
        user.send(&big, &format!("page {i}")).await?;
    }
    let start = Instant::now();
    let (mut seen, mut from) = (0usize, None::<String>);
    while seen < 1000 {
        let page = user.messages(&big, from.as_deref(), 100).await?;
        let n = page["chunk"].as_array().map(|c| c.len()).unwrap_or(0);
        seen += n;
        match page["end"].as_str() {
            Some(end) if n > 0 => from = Some(end.to_owned()),
            _ => break,
        }
    }
    let paginate = start.elapsed();
    let s = summary(&syncs);
    let text = format!(
        "{rooms} rooms x {events}: {}; /messages over {seen} events in {:.1}ms",
        describe("initial sync", &s),
        paginate.as_secs_f64() * 1000.0
    );
    Ok(outcome(
        cli,
        "initial-sync",
        text,
        json!({"rooms": rooms, "events": events, "initial_sync": s, "messages_1000_ms": paginate.as_secs_f64() * 1000.0}),
    ))
}

pub async fn join(cli: &Cli, members: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, members + 1).await?;
    let room = users[0].create_room(true).await?;
    for u in &users[1..members] {
        u.join(&room).await?;
    }
    let newcomer = &users[members];
    let start = Instant::now();
    newcomer.join(&room).await?;
    let joined = start.elapsed();
    newcomer.sync(None, 0, None).await?;
    let first_sync = start.elapsed();
    let text = format!(
        "room of {members}: join {:.1}ms, join + first sync {:.1}ms",
        joined.as_secs_f64() * 1000.0,
        first_sync.as_secs_f64() * 1000.0
    );
    Ok(outcome(
        cli,
        "join",
        text,
        json!({"members": members, "join_ms": joined.as_secs_f64() * 1000.0, "join_and_sync_ms": first_sync.as_secs_f64() * 1000.0}),
    ))
}

/// Waits for each of `messages` sends to arrive through `arrivals`; returns
/// the end-to-end latencies.
async fn message_latencies(
    sender: &User,
    room: &str,
    messages: usize,
    arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) -> anyhow::Result<Vec<Duration>> {
    let mut e2e = Vec::with_capacity(messages);
    for i in 0..messages {
        let start = Instant::now();
        let event_id = sender.send(room, &format!("latency {i}")).await?;
        let wait_until = Instant::now() + WAIT_LIMIT;
        loop {
            let (id, at) = tokio::time::timeout_at(wait_until.into(), arrivals.recv())
                .await
                .context("a message never arrived")?
                .context("the sync loop ended")?;
            if id == event_id {
                e2e.push(at.duration_since(start));
                break;
            }
        }
    }
    Ok(e2e)
}

pub async fn sliding_sync(cli: &Cli, rooms: usize, messages: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 2).await?;
    let (user, sender) = (&users[0], &users[1]);
    let mut room_ids = Vec::new();
    for _ in 0..rooms {
        room_ids.push(user.create_room(true).await?);
    }
    // A few messages in every room, so each has a latest event.
    for chunk in room_ids.chunks(8) {
        let mut tasks = Vec::new();
        for room in chunk {
            let (user, room) = (user.clone(), room.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..3 {
                    user.send(&room, &format!("history {i}")).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let resp = user.sliding_sync(None, 0, &room_list_request((0, 19))).await?;
        firsts.push(start.elapsed());
        let returned = resp["rooms"].as_object().map(|r| r.len()).unwrap_or(0);
        anyhow::ensure!(returned == rooms.min(20), "the first response has {returned} rooms");
    }
    // The latency room: the sender joins one of the user's rooms.
    let room = room_ids[0].clone();
    sender.join(&room).await?;
    let deadline = Instant::now() + WAIT_LIMIT + Duration::from_secs(2 * messages as u64);
    let mut sliding = user.watch_sliding(deadline).await?;
    let sliding_e2e = message_latencies(sender, &room, messages, &mut sliding).await?;
    drop(sliding);
    let mut longpoll = user.watch(Transport::Longpoll, deadline).await?;
    let sync_e2e = message_latencies(sender, &room, messages, &mut longpoll).await?;
    let first = summary(&firsts);
    let (sliding_s, sync_s) = (summary(&sliding_e2e), summary(&sync_e2e));
    let text = format!(
        "{rooms} rooms: {}; {}; {}",
        describe("first sliding sync (0-19, limit 1)", &first),
        describe("e2e via sliding sync", &sliding_s),
        describe("e2e via /sync", &sync_s),
    );
    Ok(outcome(
        cli,
        "sliding-sync",
        text,
        json!({"rooms": rooms, "messages": messages, "first_response": first, "e2e_sliding": sliding_s, "e2e_sync": sync_s}),
    ))
}

/// Runs `count` jobs with at most `in_flight` at a time; `job(i)` makes the
/// i-th.
async fn bounded_concurrency<F, Fut>(count: usize, in_flight: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for i in 0..count {
        if running.len() >= in_flight {
            running.join_next().await.context("a job")???;
        }
        running.spawn(job(i));
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

/// A message body of four words drawn from a 500-word vocabulary, so that
/// every word is common except the needle's.
fn filler(i: usize) -> String {
    const SYLLABLES: [&str; 25] = [
        "ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zu", "bra", "cle", "dri", "fro", "glu", "pla", "qui",
        "sto", "tra", "wen", "xo", "yel", "cor", "dun", "fay",
    ];
    let word = |n: usize| format!("{}{}", SYLLABLES[n % 25], SYLLABLES[(n / 25) % 20]);
    let h = i.wrapping_mul(2_654_435_761);
    format!("{} {} {} {} number {i}", word(h % 500), word((h >> 9) % 500), word((h >> 18) % 500), word((h >> 27) % 500))
}

pub async fn search(cli: &Cli, messages: usize, queries: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 1).await?;
    let user = users[0].clone();
    let mut rooms = Vec::new();
    for _ in 0..10 {
        rooms.push(user.create_room(false).await?);
    }
    let needle_at = messages / 2;
    let needle = format!("zebrafish{prefix}");
    let fill_start = Instant::now();
    let (rooms, needle_body) = (Arc::new(rooms), format!("the {needle} swims past"));
    let (u, r, n) = (user.clone(), rooms.clone(), needle_body.clone());
    bounded_concurrency(messages, 16, move |i| {
        let (user, room) = (u.clone(), r[i % r.len()].clone());
        let body = if i == needle_at { n.clone() } else { filler(i) };
        async move {
            user.send(&room, &body).await?;
            Ok(())
        }
    })
    .await?;
    let fill = fill_start.elapsed();
    // Ranked search for the one message holding the word.
    let query = needle.clone();
    let mut ranked = Vec::with_capacity(queries);
    for _ in 0..queries {
        let start = Instant::now();
        let resp = user.search(&query, "rank", None).await?;
        ranked.push(start.elapsed());
        let results = &resp["search_categories"]["room_events"]["results"];
        let first = results[0]["result"]["content"]["body"].as_str().unwrap_or_default();
        anyhow::ensure!(first == needle_body, "the search for {query} found {results}");
    }
    // A common word, newest first, and the next page.
    let common = filler(0).split(' ').next().unwrap_or_default().to_owned();
    let (mut recent, mut paged) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    for _ in 0..queries {
        let start = Instant::now();
        let resp = user.search(&common, "recent", None).await?;
        recent.push(start.elapsed());
        let category = &resp["search_categories"]["room_events"];
        anyhow::ensure!(category["results"].as_array().is_some_and(|r| !r.is_empty()), "no results for {common}");
        if let Some(next) = category["next_batch"].as_str() {
            let start = Instant::now();
            user.search(&common, "recent", Some(next)).await?;
            paged.push(start.elapsed());
        }
    }
    let (ranked_s, recent_s, paged_s) = (summary(&ranked), summary(&recent), summary(&paged));
    let text = format!(
        "{messages} messages (sent in {:.1}s): {}; {}; {}",
        fill.as_secs_f64(),
        describe("rare word, ranked", &ranked_s),
        describe("common word, recent", &recent_s),
        describe("its next page", &paged_s),
    );
    Ok(outcome(
        cli,
        "search",
        text,
        json!({"messages": messages, "fill_s": fill.as_secs_f64(), "ranked": ranked_s, "recent": recent_s, "next_page": paged_s}),
    ))
}

pub async fn relations(cli: &Cli, reactions: usize, queries: usize) -> anyhow::Result<Outcome> {
    let prefix = run_prefix();
    let users = register_many(cli, &prefix, 1).await?;
    let user = users[0].clone();
    let room = user.create_room(false).await?;
    let parent = user.send(&room, "react to me").await?;
    let (u, r, p) = (user.clone(), room.clone(), parent.clone());
    bounded_concurrency(reactions, 16, move |i| {
        let (user, room, parent) = (u.clone(), r.clone(), p.clone());
        async move {
            let content =
                json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": format!("r{i}")}});
            user.send_event(&room, "m.reaction", content).await?;
            Ok(())
        }
    })
    .await?;
    for i in 0..5 {
        let content = json!({"msgtype": "m.text", "body": format!("thread reply {i}"),
            "m.relates_to": {"rel_type": "m.thread", "event_id": parent}});
        user.send_event(&room, "m.room.message", content).await?;
    }
    // Every relation, paged by 100.
    let mut all = Vec::new();
    for _ in 0..queries.div_ceil(10) {
        let start = Instant::now();
        let (mut seen, mut from) = (0usize, None::<String>);
        loop {
            let page = user.relations(&room, &parent, None, from.as_deref(), 100).await?;
            seen += page["chunk"].as_array().map(|c| c.len()).unwrap_or(0);
            match page["next_batch"].as_str() {
                Some(next) => from = Some(next.to_owned()),
                None => break,
            }
        }
        all.push(start.elapsed());
        anyhow::ensure!(seen == reactions + 5, "/relations listed {seen} of {} relations", reactions + 5);
    }
    let (mut first_page, mut event) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    for _ in 0..queries {
        let start = Instant::now();
        let page = user.relations(&room, &parent, Some("m.annotation"), None, 50).await?;
        first_page.push(start.elapsed());
        anyhow::ensure!(page["chunk"].as_array().map(|c| c.len()) == Some(50), "a short first page: {page}");
        let start = Instant::now();
        let served = user.event(&room, &parent).await?;
        event.push(start.elapsed());
        let count = &served["unsigned"]["m.relations"]["m.thread"]["count"];
        anyhow::ensure!(count == 5, "the thread summary on /event is {count}");
    }
    let (all_s, first_s, event_s) = (summary(&all), summary(&first_page), summary(&event));
    let text = format!(
        "{reactions} reactions: {}; {}; {}",
        describe("all relations, pages of 100", &all_s),
        describe("first 50 annotations", &first_s),
        describe("/event with bundled aggregations", &event_s),
    );
    Ok(outcome(
        cli,
        "relations",
        text,
        json!({"reactions": reactions, "all_pages": all_s, "first_page": first_s, "event": event_s}),
    ))
}
