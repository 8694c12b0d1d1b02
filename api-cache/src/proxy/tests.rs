//! The read path end to end, over the in-memory shared store and a local
//! origin: what it stores, what it answers, and what it leaves behind.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use service_kit::Metrics;
use service_kit::config::from_vars;

use crate::config::Config;
use crate::metrics::CacheMetrics;
use crate::routes::AppState;
use crate::storage::memory::MemoryStore;

/// An origin on a free local port that answers `body` after `delay`, and counts.
struct Origin {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    async fn start(body: &'static str, delay: Duration) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("content-type", "application/json"),
                    ],
                    body,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn state(origin: &Origin, store: Arc<MemoryStore>) -> AppState {
    state_with(origin, store, &[])
}

/// The state with these variables set as well.
fn state_with(origin: &Origin, store: Arc<MemoryStore>, settings: &[(&str, &str)]) -> AppState {
    let mut vars = vec![
        ("BACKEND_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("BACKEND_PORT".to_owned(), origin.port.to_string()),
    ];
    vars.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = from_vars::<Config, _>(vars)
        .and_then(Config::validate)
        .unwrap();
    let registry = Metrics::new();
    let metrics = CacheMetrics::register(&registry);
    let runtime = service_kit::RuntimeConfig::for_tests();
    AppState::new(
        crate::startup::context_with(&config, &runtime, store, registry, metrics).unwrap(),
    )
}

fn get(path: &str) -> Request {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

async fn answer(state: &AppState, path: &str) -> Response {
    super::proxy(state.clone(), IpAddr::from([127, 0, 0, 1]), get(path)).await
}

fn x_cache(response: &Response) -> &str {
    response.headers()["x-cache"].to_str().unwrap()
}

fn cache_status(response: &Response) -> &str {
    response.headers()["cache-status"].to_str().unwrap()
}

fn with_header(path: &str, name: &str, value: &str) -> Request {
    Request::builder()
        .uri(path)
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_fill_is_stored_in_both_tiers_and_the_next_request_is_a_hit() {
    let origin = Origin::start("[1,2,3]", Duration::ZERO).await;
    let store = Arc::new(MemoryStore::default());
    let state = state(&origin, store.clone());
    assert_eq!(x_cache(&answer(&state, "/a").await), "MISS");
    assert_eq!(x_cache(&answer(&state, "/a").await), "HIT");
    assert_eq!(origin.requests(), 1);
    assert!(
        crate::test_support::eventually(|| store.entries() == 1).await,
        "written to the shared store in the background"
    );
}

#[tokio::test]
async fn concurrent_misses_make_one_origin_request() {
    let origin = Origin::start("[1]", Duration::from_millis(200)).await;
    let state = state(&origin, Arc::new(MemoryStore::default()));
    let answers = futures_util::future::join_all((0..50).map(|_| answer(&state, "/cold"))).await;
    assert!(answers.iter().all(|a| a.status() == 200));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_request_dropped_mid_fill_leaves_no_lock_and_no_flight() {
    let origin = Origin::start("[1]", Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::default());
    let state = state(&origin, store.clone());
    let request = tokio::spawn({
        let state = state.clone();
        async move { answer(&state, "/slow").await }
    });
    let flight = crate::cache::key::EntryKey::url(crate::cache::key::UrlKey::of(
        &crate::cache::target::Target::parse("/slow", None).unwrap(),
    ));
    assert!(
        crate::test_support::eventually(|| store.is_locked(flight)).await,
        "the fill took its lock"
    );
    // The client goes away: the request's future is dropped mid-fill.
    request.abort();
    let _ = request.await;
    assert!(
        crate::test_support::eventually(|| !store.is_locked(flight)).await,
        "the lock was left behind"
    );
    assert!(
        !state.flights.in_progress(&flight),
        "the flight was left behind"
    );
}

#[tokio::test]
async fn with_the_shared_store_down_the_local_tier_serves_and_misses_bypass() {
    let origin = Origin::start("[1]", Duration::ZERO).await;
    let store = Arc::new(MemoryStore::default());
    let state = state(&origin, store.clone());
    assert_eq!(x_cache(&answer(&state, "/held").await), "MISS");
    store.set_available(false);
    assert_eq!(x_cache(&answer(&state, "/held").await), "HIT");
    let response = answer(&state, "/other").await;
    assert_eq!(x_cache(&response), "BYPASS");
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .ends_with("detail=storage-unavailable")
    );
}

#[test]
fn the_hit_path_future_is_small() {
    // Every await moves the futures it holds; large ones (a fill with its
    // origin request) are boxed, so that a hit does not copy them.
    fn size<F>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let origin = Origin::start("[1]", Duration::ZERO).await;
        let state = state(&origin, Arc::new(MemoryStore::default()));
        let future = super::proxy(state, IpAddr::from([127, 0, 0, 1]), get("/"));
        eprintln!("{} bytes", size(&future));
        assert!(size(&future) <= 2048, "{} bytes", size(&future));
    });
}

#[tokio::test]
async fn requests_that_forbid_storing_still_share_one_origin_request() {
    let origin = Origin::start("[1]", Duration::from_millis(200)).await;
    let state = state(&origin, Arc::new(MemoryStore::default()));
    let peer = IpAddr::from([127, 0, 0, 1]);
    let no_store = (0..50).map(|_| {
        let request = with_header("/busy", "cache-control", "no-store");
        super::proxy(state.clone(), peer, request)
    });
    let answers = futures_util::future::join_all(no_store).await;
    assert!(answers.iter().all(|a| a.status() == 200));
    assert_eq!(
        origin.requests(),
        1,
        "a flood of no-store requests is one query"
    );
}

#[tokio::test]
async fn past_the_origin_limit_a_request_gets_a_503_with_retry_after_not_a_queue() {
    let origin = Origin::start("[1]", Duration::from_millis(500)).await;
    let store = Arc::new(MemoryStore::default());
    let state = state_with(&origin, store, &[("BACKEND_MAX_CONCURRENT_REQUESTS", "1")]);
    let first = tokio::spawn({
        let state = state.clone();
        async move { answer(&state, "/first").await }
    });
    assert!(crate::test_support::eventually(|| origin.requests() == 1).await);
    let refused = answer(&state, "/second").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        cache_status(&refused).ends_with("detail=origin-busy"),
        "{}",
        cache_status(&refused)
    );
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(
        answer(&state, "/second").await.status(),
        200,
        "a slot is free again"
    );
}

#[tokio::test]
async fn spellings_of_one_target_share_its_entry_and_climbing_above_the_root_is_refused() {
    let origin = Origin::start("[1]", Duration::ZERO).await;
    let state = state(&origin, Arc::new(MemoryStore::default()));
    assert_eq!(x_cache(&answer(&state, "/a/b?y=2&x=1").await), "MISS");
    for spelling in [
        "/a/./b?x=1&y=2",
        "/x/../a/%62?y=2&x=1",
        "/%61/c/../b?x=1&&y=2",
    ] {
        assert_eq!(
            x_cache(&answer(&state, spelling).await),
            "HIT",
            "{spelling}"
        );
    }
    let refused = answer(&state, "/../a/b").await;
    assert_eq!(refused.status(), 400);
    assert!(cache_status(&refused).ends_with("detail=invalid-target"));
    assert_eq!(origin.requests(), 1);
}
