//! Lists at an older resource version: the current objects with the retained history
//! undone, as kube-apiserver serves `resourceVersionMatch=Exact` and continue tokens
//! (every page of a paginated list shows the first page's snapshot).

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;

use super::{
    error::ApiError,
    meta::meta_str,
    resources::ResourceType,
    store::{EventType, ObjKey, State},
};

/// The objects of `rt`'s storage as they were at `rv`.
///
/// # Errors
///
/// 410 Expired when the history back to `rv` is no longer retained.
pub(crate) fn objects_at(
    state: &State,
    rt: &ResourceType,
    rv: u64,
) -> Result<BTreeMap<ObjKey, Arc<Value>>, ApiError> {
    let records = state
        .history_after(&rt.storage, rv)
        .ok_or_else(|| ApiError::gone("The resourceVersion for the provided list is too old."))?;
    let mut objects = state.objects.get(&rt.storage).cloned().unwrap_or_default();
    for record in records.iter().rev() {
        let key = (
            meta_str(&record.object, "namespace")
                .unwrap_or_default()
                .to_string(),
            meta_str(&record.object, "name")
                .unwrap_or_default()
                .to_string(),
        );
        match (&record.event, &record.old) {
            (EventType::Added, _) => {
                objects.remove(&key);
            }
            (_, Some(old)) => {
                objects.insert(key, Arc::clone(old));
            }
            (_, None) => {}
        }
    }
    Ok(objects)
}

/// Objects of `objects` in namespace `ns` (all when `None`), after `after` in key order.
pub(crate) fn scan<'a>(
    objects: &'a BTreeMap<ObjKey, Arc<Value>>,
    ns: Option<&'a str>,
    after: Option<&'a ObjKey>,
) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
    let start = match (after, ns) {
        (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
        (None, Some(ns)) => std::ops::Bound::Included((ns.to_string(), String::new())),
        (None, None) => std::ops::Bound::Unbounded,
    };
    objects
        .range((start, std::ops::Bound::Unbounded))
        .take_while(move |((k_ns, _), _)| ns.is_none_or(|ns| k_ns == ns))
        .map(|(_, v)| v)
}
