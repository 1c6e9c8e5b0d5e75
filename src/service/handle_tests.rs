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

/// A call whose peer answers at once; `rekey` replaces the keyring while
/// the request is out.
fn call_answered(node: &Arc<NodeHandle>, rekey: Option<&'static str>) -> Result<(), PeerError> {
    let during = Arc::clone(node);
    async_std::task::block_on(node.call(1, Duration::from_secs(1), move |_, _| {
        if let Some(key) = rekey {
            during.guard.replace(secrets(key));
        }
        Box::pin(std::future::ready(Ok(())))
    }))
}

#[test]
fn an_answer_that_comes_after_the_keyring_was_replaced_is_refused() {
    let node = memory_node();
    node.guard.replace(secrets("the-first-cluster-secret"));
    assert!(call_answered(&node, None).is_ok());
    let e = call_answered(&node, Some("another-secret-entirely"))
        .expect_err("an answer checked against the replaced keyring was taken");
    assert_eq!(e.refused_reply, Some(REPLY_BAD_SIGNATURE));
    // The next request is signed, and its answer checked, with the new one.
    assert!(call_answered(&node, None).is_ok());
}
