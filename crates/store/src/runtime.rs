//! Driving kube-runtime from a store.
//!
//! kube-runtime's `Controller` consumes a stream of objects plus a reflector cache
//! (`Controller::for_stream`, feature `unstable-runtime-stream-control`). [`watcher`] turns
//! list+watch on any [`Store`](crate::Store) into the exact event stream kube-runtime's own
//! `watcher` produces (`Init`, `InitApply`…, `InitDone`, then `Apply`/`Delete`), re-listing
//! when the watch position is [`Gone`](crate::Error::Gone). [`controller`] wires it through a
//! reflector into a `Controller`, so reconcilers get the library's queueing, deduplication
//! and backoff on both backends:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use futures::StreamExt;
//! # use kube::runtime::controller::Action;
//! # type Thing = k8s_openapi::api::core::v1::Node;
//! # async fn reconcile(_: Arc<Thing>, _: Arc<()>) -> Result<Action, hwameistor_store::Error> { Ok(Action::await_change()) }
//! # fn error_policy(_: Arc<Thing>, _: &hwameistor_store::Error, _: Arc<()>) -> Action { Action::await_change() }
//! # async fn demo(store: hwameistor_store::Store) {
//! hwameistor_store::runtime::controller(store.all::<Thing>(), Default::default())
//!     .run(reconcile, error_policy, Arc::new(()))
//!     .for_each(|_| async {})
//!     .await;
//! # }
//! ```
//!
//! Other kinds trigger the same controller through further watcher streams, e.g.
//! `.owns_stream(watcher(store.all::<Child>(), sel).default_backoff().touched_objects())` or
//! `.watches_stream(.., mapper)`; a read-only cache of another kind (say, all nodes for
//! placement) is [`cache`].

use std::collections::VecDeque;

use futures::{Stream, StreamExt};
use kube::core::{Selector, Status};
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher as kw};

use crate::{Error, Event, Object, Objects, WatchStream};

/// The store error as a kube-runtime watcher error (a `WatchError` carrying an API status).
pub fn to_watcher_error(err: &Error) -> kw::Error {
    kw::Error::WatchError(Box::new(
        Status::failure(&err.to_string(), err.reason()).with_code(err.http_status()),
    ))
}

enum Phase<K> {
    /// (Re)list next.
    List,
    /// Watching from the list's version.
    Watching(WatchStream<K>),
}

struct State<K> {
    objects: Objects<K>,
    selector: Selector,
    phase: Phase<K>,
    pending: VecDeque<Result<kw::Event<K>, kw::Error>>,
}

/// List+watch `objects` as kube-runtime watcher events.
///
/// The stream never ends. Errors are yielded (then the stream re-lists on its next poll);
/// put `.default_backoff()` ([`WatchStreamExt`]) after it, as with kube's own watcher.
pub fn watcher<K: Object>(
    objects: Objects<K>,
    selector: Selector,
) -> impl Stream<Item = Result<kw::Event<K>, kw::Error>> + Send + 'static {
    let state = State {
        objects,
        selector,
        phase: Phase::List,
        pending: VecDeque::new(),
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            match &mut st.phase {
                Phase::List => match st.objects.list(&st.selector).await {
                    Ok(list) => {
                        st.pending.push_back(Ok(kw::Event::Init));
                        st.pending
                            .extend(list.items.into_iter().map(|o| Ok(kw::Event::InitApply(o))));
                        st.pending.push_back(Ok(kw::Event::InitDone));
                        match st.objects.watch(&st.selector, &list.resource_version).await {
                            Ok(stream) => st.phase = Phase::Watching(stream),
                            Err(e) if e.is_gone() => {}
                            Err(e) => st.pending.push_back(Err(to_watcher_error(&e))),
                        }
                    }
                    Err(e) => return Some((Err(to_watcher_error(&e)), st)),
                },
                Phase::Watching(stream) => match stream.next().await {
                    Some(Ok(Event::Added(o) | Event::Modified(o))) => {
                        return Some((Ok(kw::Event::Apply(o)), st));
                    }
                    Some(Ok(Event::Deleted(o))) => return Some((Ok(kw::Event::Delete(o)), st)),
                    Some(Err(e)) => {
                        st.phase = Phase::List;
                        if !e.is_gone() {
                            return Some((Err(to_watcher_error(&e)), st));
                        }
                    }
                    None => st.phase = Phase::List,
                },
            }
        }
    })
}

/// A kube-runtime `Controller` for `objects` (filtered by `selector`), fed by [`watcher`]
/// through a reflector whose cache the controller reads.
///
/// Add `.owns_stream(..)`/`.watches_stream(..)` with further [`watcher`] streams as needed.
pub fn controller<K: Object>(objects: Objects<K>, selector: Selector) -> Controller<K> {
    let (reader, writer) = reflector::store();
    let trigger = watcher(objects, selector)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(trigger, reader)
}

/// A kube-runtime reflector cache of `objects`, kept current by the returned future (spawn
/// it; it runs until dropped). `reader.wait_until_ready().await` waits for the first list.
pub fn cache<K: Object>(
    objects: Objects<K>,
    selector: Selector,
) -> (
    reflector::Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let driver = watcher(objects, selector)
        .default_backoff()
        .reflect(writer)
        .for_each(|_| async {});
    (reader, driver)
}
