//! The backend-neutral Store conformance suite, against an in-memory and a file store.

use flotilla_store_sqlite::SqliteStore;
use flotilla_testkit::store_conformance;

#[tokio::test]
async fn conformance_in_memory() {
    let store = SqliteStore::open_in_memory().expect("open in memory");
    store_conformance::run_all(&store).await;
}

#[tokio::test]
async fn conformance_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("state").join("flotilla.db")).expect("open file");
    store_conformance::run_all(&store).await;
}

/// The suite never assumes an empty store: a second run on the same database passes too.
#[tokio::test]
async fn conformance_twice_on_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    store_conformance::run_all(&SqliteStore::open(&path).expect("open")).await;
    store_conformance::run_all(&SqliteStore::open(&path).expect("reopen")).await;
}
