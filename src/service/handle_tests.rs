use super::*;
use crate::service::transport::Offline;
use crate::store::MemoryStore;

fn memory_node() -> Arc<NodeHandle> {
    let topo = Topology::parse(
        "[cluster]\nname = \"handle-test\"\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n",
        "<text>",
        None,
    )
    .expect("topology");
    let store: AnyStore = Box::new(MemoryStore::new());
    NodeHandle::new(topo, "a", store, Secrets::default(), Arc::new(Offline)).expect("open")
}

#[test]
fn a_node_over_memory_writes_reads_lists_and_stops_taking_writes() {
    let node = memory_node();
    async_std::task::block_on(async {
        for k in ["k1", "k2", "k3"] {
            let e = node.write(k.into(), Some(b"v".to_vec())).await;
            assert!(e.is_ok(), "{e:?}");
        }
        let deleted = node.write("k2".into(), None).await.expect("delete");
        assert!(deleted.is_tombstone());
        assert_eq!(node.get("k2").expect("get"), None);
        let k1 = node.get("k1").expect("get").expect("k1 is there");
        assert_eq!(k1.value.as_deref(), Some(&b"v"[..]));
        let page = node.list("k", None, 2).expect("list");
        let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["k1", "k3"]);
        assert_eq!(page.next_after.as_deref(), Some("k3"));
        let d = node.digest();
        assert_eq!((d.id.as_str(), d.keys, d.tombstones), ("a", 2, 1));
        node.stopping.store(true, Ordering::SeqCst);
        let refused = node.write("k4".into(), Some(b"v".to_vec())).await;
        assert!(matches!(refused, Err(WriteFailed::ShuttingDown)));
    });
}

fn secrets(key: &str) -> Secrets {
    Secrets {
        keyring: crate::auth::Keyring::parse(key, "<test>").expect("a keyring"),
        ..Secrets::default()
    }
}

#[test]
fn a_reply_is_checked_against_the_keyring_in_force_when_it_comes() {
    let node = memory_node();
    node.guard.replace(secrets("the-first-cluster-secret"));
    let during = Arc::clone(&node);
    let (signed, checked) =
        async_std::task::block_on(node.call(1, Duration::from_secs(1), move |_, call| {
            let signed = call.signer.cloned();
            // A reload replaces the keyring while the request is out.
            during.guard.replace(secrets("another-secret-entirely"));
            let checked = call.reply_keys.now();
            Box::pin(std::future::ready(Ok((signed, checked))))
        }))
        .expect("answered");
    assert!(signed.is_some());
    assert_eq!(checked, node.guard.signer(), "checked with the keyring now");
    assert_ne!(
        checked, signed,
        "not with the one the request was signed with"
    );
}

#[test]
fn a_waiting_read_is_answered_by_the_write_it_waits_for_and_not_before() {
    use crate::service::watch::{WaitFailed, MAX_WAITS};
    let node = memory_node();
    async_std::task::block_on(async {
        // Nothing comes: the wait runs out and answers what is there.
        let t = std::time::Instant::now();
        let none = node.get_when("k", None, Duration::from_millis(50)).await;
        assert!(matches!(none, Ok(None)), "{none:?}");
        assert!(t.elapsed() >= Duration::from_millis(50));

        // A write answers a read that waits for it, long before its wait.
        let waiter = Arc::clone(&node);
        let read = async_std::task::spawn(async move {
            let t = std::time::Instant::now();
            let got = waiter.get_when("k", None, Duration::from_secs(60)).await;
            (got, t.elapsed())
        });
        // The read is waiting (its place taken) before the write.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node.watchers.waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the read never waited"
            );
            async_std::task::sleep(Duration::from_millis(1)).await;
        }
        let first = node
            .write("k".into(), Some(b"1".to_vec()))
            .await
            .expect("write");
        let (got, took) = read.await;
        let got = got.expect("read").expect("the value written");
        assert_eq!(got.version, first.version);
        assert!(took < Duration::from_secs(30), "answered after {took:?}");

        // newer_than: the value there does not answer; a newer one does,
        // and so does a delete.
        let old = node
            .get_when("k", Some(first.version), Duration::from_millis(30))
            .await;
        assert_eq!(old.expect("read").map(|e| e.version), Some(first.version));
        let waiter = Arc::clone(&node);
        let v = first.version;
        let read = async_std::task::spawn(async move {
            waiter.get_when("k", Some(v), Duration::from_secs(60)).await
        });
        while node.watchers.waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the read never waited"
            );
            async_std::task::sleep(Duration::from_millis(1)).await;
        }
        node.write("k".into(), None).await.expect("delete");
        assert!(matches!(read.await, Ok(None)));

        // Past MAX_WAITS at once, a read is refused, not queued.
        let mut held = Vec::new();
        for _ in 0..MAX_WAITS {
            let w = Arc::clone(&node);
            held.push(async_std::task::spawn(async move {
                w.get_when("absent", None, Duration::from_secs(60)).await
            }));
        }
        while node.watchers.waiting() < MAX_WAITS {
            assert!(
                std::time::Instant::now() < deadline,
                "the reads never waited"
            );
            async_std::task::sleep(Duration::from_millis(1)).await;
        }
        let refused = node.get_when("absent", None, Duration::from_secs(60)).await;
        assert!(matches!(refused, Err(WaitFailed::TooMany)), "{refused:?}");
        node.write("absent".into(), Some(b"here".to_vec()))
            .await
            .expect("write");
        for h in held {
            assert!(matches!(h.await, Ok(Some(_))));
        }
        assert_eq!(node.watchers.waiting(), 0);
    });
}
