//! Kubernetes Events about our objects, shared by every reconciler.
//!
//! An Event is named `<object>.<reason in lower case>` in [`EVENT_NAMESPACE`]: the first
//! occurrence creates it, a repeat bumps `count`, `lastTimestamp` and the message (what
//! `kubectl describe` shows). Recording is best effort: a failure is logged at debug level
//! and never fails the reconcile that wanted to tell the user something.

use hwameistor_store::Store;
use k8s_openapi::api::core::v1::{Event as KubeEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;

/// Namespace of the Events about our (cluster-scoped) objects.
pub const EVENT_NAMESPACE: &str = "default";

/// `involvedObject` of an Event about `o` (apiVersion, kind, name, uid).
pub fn object_ref<K: Resource<DynamicType = ()>>(o: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: o.meta().name.clone(),
        uid: o.meta().uid.clone(),
        ..Default::default()
    }
}

/// Who reports an Event: the component (`local-storage`, `local-disk-manager`) and, for node
/// agents, the node.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

/// Record (or bump) the Event `<object>.<reason>` about `object`; failures are only logged.
/// `type_` is `Normal` or `Warning`.
pub async fn record_event(
    store: &Store,
    object: ObjectReference,
    source: Source<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let obj = object.name.clone().unwrap_or_default();
    let ev_name = format!("{obj}.{}", reason.to_ascii_lowercase());
    let events = store.namespaced::<KubeEvent>(EVENT_NAMESPACE);
    let now = Time(jiff::Timestamp::now());
    let res = match events.get_opt(&ev_name).await {
        Ok(Some(mut ev)) => {
            ev.message = Some(message.to_owned());
            ev.count = Some(ev.count.unwrap_or(1) + 1);
            ev.last_timestamp = Some(now);
            events.replace(&ev).await.map(|_| ())
        }
        Ok(None) => {
            let ev = KubeEvent {
                metadata: ObjectMeta {
                    name: Some(ev_name),
                    namespace: Some(EVENT_NAMESPACE.into()),
                    ..Default::default()
                },
                involved_object: object,
                reason: Some(reason.to_owned()),
                message: Some(message.to_owned()),
                type_: Some(type_.to_owned()),
                count: Some(1),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                source: Some(EventSource {
                    component: Some(source.component.to_owned()),
                    host: source.host.map(str::to_owned),
                }),
                ..Default::default()
            };
            events.create(&ev).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = res {
        tracing::debug!(object = %obj, error = %e, "could not record event");
    }
}
