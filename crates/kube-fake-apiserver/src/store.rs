//! Object storage: one global resourceVersion counter, a bounded event history (what watches
//! replay from), the resource registry, deletion with finalizers, and garbage collection.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::meta::{Key, finalizers, key_of, meta_str, new_uid, now_rfc3339, set_meta};
use super::request::RecordedRequest;
use super::resources::{ResourceDef, builtins, defs_from_crd};

/// One entry of the watch history.
#[derive(Debug, Clone)]
pub struct HistEvent {
    pub rv: u64,
    pub storage: String,
    pub etype: &'static str,
    pub object: Value,
    /// The object before this event (None for ADDED).
    pub prev: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub status: u16,
    /// A raw body instead of a metav1 Status (garbage, truncated JSON, a huge page).
    pub body: Option<String>,
    pub remaining: usize,
}

pub struct State {
    pub rv: u64,
    pub defs: Vec<ResourceDef>,
    pub objects: BTreeMap<String, BTreeMap<Key, Value>>,
    pub history: VecDeque<HistEvent>,
    pub history_limit: usize,
    /// resourceVersion of the newest event dropped from the history.
    pub evicted_upto: u64,
    /// resourceVersion at which each storage started being served (its watch window start).
    pub window_start: HashMap<String, u64>,
    pub requests: Vec<RecordedRequest>,
    pub faults: Vec<Fault>,
    /// Bearer tokens issued and whom they stand for.
    pub tokens: crate::auth::Tokens,
}

/// Delete options that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

pub enum Deleted {
    /// Finalizers keep the object around; it now carries a deletionTimestamp.
    Pending(Value),
    /// The object is gone.
    Removed(Value),
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl State {
    // An empty server is always built on purpose (FakeApiServer::start), never defaulted.
    pub fn new() -> State {
        let mut s = State {
            rv: 0,
            defs: builtins(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: 1000,
            evicted_upto: 0,
            window_start: HashMap::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            tokens: Default::default(),
        };
        for d in s.defs.clone() {
            s.window_start.insert(d.storage.clone(), 1);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let def = ResourceDef::builtin("", "v1", "namespaces", "Namespace", false);
            let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            super::builtin::normalize(&def, &mut obj);
            set_meta(&mut obj, "uid", json!(new_uid()));
            set_meta(&mut obj, "creationTimestamp", json!(now_rfc3339()));
            s.put("/namespaces", obj);
        }
        s
    }

    pub fn find_def(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    pub fn def_for_storage(&self, storage: &str) -> Option<ResourceDef> {
        self.defs.iter().find(|d| d.storage == storage).cloned()
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(storage)?.get(&(ns.to_string(), name.to_string()))
    }

    pub fn namespace(&self, name: &str) -> Option<&Value> {
        self.get("/namespaces", "", name)
    }

    /// Oldest resourceVersion a watch on this storage may start from.
    pub fn oldest_rv(&self, storage: &str) -> u64 {
        self.window_start
            .get(storage)
            .copied()
            .unwrap_or(1)
            .max(self.evicted_upto)
    }

    fn record(&mut self, storage: &str, etype: &'static str, object: Value, prev: Option<Value>) {
        self.history.push_back(HistEvent {
            rv: self.rv,
            storage: storage.to_string(),
            etype,
            object,
            prev,
        });
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.evicted_upto = e.rv;
            }
        }
    }

    /// Stores an object under a fresh resourceVersion, recording ADDED or MODIFIED.
    pub fn put(&mut self, storage: &str, mut obj: Value) -> Value {
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        let key = key_of(&obj);
        let prev = self
            .objects
            .entry(storage.to_string())
            .or_default()
            .insert(key, obj.clone());
        let etype = if prev.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(storage, etype, obj.clone(), prev);
        obj
    }

    /// Removes an object, recording DELETED (carrying a new resourceVersion, like etcd).
    pub fn remove(&mut self, storage: &str, ns: &str, name: &str) -> Option<Value> {
        let prev = self
            .objects
            .get_mut(storage)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut gone = prev.clone();
        set_meta(&mut gone, "resourceVersion", json!(self.rv.to_string()));
        self.record(storage, "DELETED", gone.clone(), Some(prev));
        if storage == "apiextensions.k8s.io/customresourcedefinitions" {
            self.unregister_crd(&gone);
        }
        Some(gone)
    }

    pub fn register_crd(&mut self, crd: &Value) {
        let defs = defs_from_crd(crd);
        if let Some(first) = defs.first() {
            let storage = first.storage.clone();
            self.defs.retain(|d| d.storage != storage);
            self.window_start.insert(storage, self.rv);
        }
        self.defs.extend(defs);
    }

    fn unregister_crd(&mut self, crd: &Value) {
        let defs = defs_from_crd(crd);
        let Some(storage) = defs.first().map(|d| d.storage.clone()) else {
            return;
        };
        let keys: Vec<Key> = self
            .objects
            .get(&storage)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in keys {
            self.remove(&storage, &ns, &name);
        }
        self.defs.retain(|d| d.storage != storage);
    }

    /// Snapshot of a storage as of `rv`, rebuilt from the history (for `resourceVersionMatch=Exact`).
    pub fn snapshot_at(&self, storage: &str, rv: u64) -> Option<BTreeMap<Key, Value>> {
        if rv < self.oldest_rv(storage) || rv > self.rv {
            return None;
        }
        let mut map = self.objects.get(storage).cloned().unwrap_or_default();
        for e in self.history.iter().rev() {
            if e.rv <= rv {
                break;
            }
            if e.storage != storage {
                continue;
            }
            let key = key_of(&e.object);
            match &e.prev {
                Some(p) => {
                    map.insert(key, p.clone());
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        Some(map)
    }

    /// DELETE semantics: preconditions, propagation finalizers, deletionTimestamp, removal.
    pub fn delete_object(&mut self, def: &ResourceDef, ns: &str, name: &str, opts: &DeleteOpts) -> ApiResult<Deleted> {
        let Some(obj) = self.get(&def.storage, ns, name).cloned() else {
            return Err(ApiError::not_found(&def.group, &def.plural, name));
        };
        crate::uid::check_delete(
            def,
            &obj,
            opts.precondition_uid.as_deref(),
            opts.precondition_rv.as_deref(),
        )?;
        let mut fins = finalizers(&obj);
        let terminating = obj.pointer("/metadata/deletionTimestamp").is_some();
        let extra = match opts.propagation.as_deref() {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = extra
            && !fins.iter().any(|x| x == f)
            && (!terminating || !fins.is_empty())
        {
            fins.push(f.to_string());
        }
        let ns_pending = def.kind == "Namespace"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if terminating {
            if fins != finalizers(&obj) {
                let mut o = obj.clone();
                set_meta(&mut o, "finalizers", json!(fins));
                return Ok(Deleted::Pending(self.put(&def.storage, o)));
            }
            return Ok(Deleted::Pending(obj));
        }
        if fins.is_empty() && !ns_pending {
            return self
                .remove(&def.storage, ns, name)
                .map(Deleted::Removed)
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name));
        }
        let mut o = obj.clone();
        set_meta(&mut o, "deletionTimestamp", json!(now_rfc3339()));
        set_meta(&mut o, "deletionGracePeriodSeconds", json!(0));
        if !fins.is_empty() {
            set_meta(&mut o, "finalizers", json!(fins));
        }
        if def.has_generation
            && let Some(g) = o.pointer("/metadata/generation").and_then(Value::as_i64)
        {
            set_meta(&mut o, "generation", json!(g + 1));
        }
        if def.kind == "Namespace"
            && let Some(Value::Object(st)) = o.get_mut("status")
        {
            st.insert("phase".into(), json!("Terminating"));
        }
        Ok(Deleted::Pending(self.put(&def.storage, o)))
    }

    /// Removes one finalizer (as a controller would), deleting the object once none remain.
    fn drop_finalizer(&mut self, storage: &str, key: &Key, fin: &str) {
        let Some(mut o) = self.get(storage, &key.0, &key.1).cloned() else {
            return;
        };
        let fins: Vec<String> = finalizers(&o).into_iter().filter(|f| f != fin).collect();
        let terminating = o.pointer("/metadata/deletionTimestamp").is_some();
        if fins.is_empty() && terminating {
            self.remove(storage, &key.0, &key.1);
            return;
        }
        set_meta(
            &mut o,
            "finalizers",
            if fins.is_empty() { Value::Null } else { json!(fins) },
        );
        self.put(storage, o);
    }

    fn all(&self) -> Vec<(String, Key, Value)> {
        let mut out = Vec::new();
        for (storage, m) in &self.objects {
            for (k, v) in m {
                out.push((storage.clone(), k.clone(), v.clone()));
            }
        }
        out
    }

    /// One pass of the garbage collector and namespace controller. Returns whether it changed anything.
    pub fn gc_pass(&mut self) -> bool {
        let all = self.all();
        let uids: HashMap<String, (String, Key, Value)> = all
            .iter()
            .map(|(s, k, v)| (meta_str(v, "uid").to_string(), (s.clone(), k.clone(), v.clone())))
            .collect();
        let mut changed = false;
        let mut has_dependents: HashMap<String, bool> = HashMap::new();
        for (storage, key, obj) in &all {
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if refs.is_empty() {
                continue;
            }
            let mut keep = Vec::new();
            let mut any_alive = false;
            let mut delete_now = false;
            for r in &refs {
                let uid = r.get("uid").and_then(Value::as_str).unwrap_or_default();
                match uids.get(uid) {
                    None => {}
                    Some((_, _, owner)) => {
                        let fins = finalizers(owner);
                        let owner_terminating = owner.pointer("/metadata/deletionTimestamp").is_some();
                        if owner_terminating && fins.iter().any(|f| f == "orphan") {
                            continue;
                        }
                        has_dependents.insert(uid.to_string(), true);
                        if owner_terminating && fins.iter().any(|f| f == "foregroundDeletion") {
                            delete_now = true;
                        }
                        any_alive = true;
                        keep.push(r.clone());
                    }
                }
            }
            let terminating = obj.pointer("/metadata/deletionTimestamp").is_some();
            if (!any_alive || delete_now) && !terminating {
                if let Some(def) = self.def_for_storage(storage) {
                    let opts = DeleteOpts {
                        propagation: Some("Background".into()),
                        ..Default::default()
                    };
                    let _ = self.delete_object(&def, &key.0, &key.1, &opts);
                    changed = true;
                }
            } else if any_alive && keep.len() != refs.len() {
                let mut o = obj.clone();
                set_meta(&mut o, "ownerReferences", json!(keep));
                self.put(storage, o);
                changed = true;
            }
        }
        for (storage, key, obj) in &all {
            if obj.pointer("/metadata/deletionTimestamp").is_none() || self.get(storage, &key.0, &key.1).is_none() {
                continue;
            }
            let uid = meta_str(obj, "uid");
            let blocked = has_dependents.get(uid).copied().unwrap_or(false);
            for f in ["foregroundDeletion", "orphan"] {
                if finalizers(obj).iter().any(|x| x == f) && !blocked {
                    self.drop_finalizer(storage, key, f);
                    changed = true;
                    break;
                }
            }
        }
        // Namespace controller: empty terminating namespaces, then finalize them.
        for (storage, key, obj) in &all {
            if storage != "/namespaces" || obj.pointer("/metadata/deletionTimestamp").is_none() {
                continue;
            }
            let ns = key.1.clone();
            let mut remaining = 0;
            let contents: Vec<(String, Key, Value)> = self
                .all()
                .into_iter()
                .filter(|(s, k, _)| s != "/namespaces" && k.0 == ns)
                .collect();
            for (s, k, o) in contents {
                remaining += 1;
                if o.pointer("/metadata/deletionTimestamp").is_none()
                    && let Some(def) = self.def_for_storage(&s)
                {
                    let _ = self.delete_object(&def, &k.0, &k.1, &DeleteOpts::default());
                    changed = true;
                }
            }
            if remaining == 0
                && let Some(mut cur) = self.get(storage, &key.0, &key.1).cloned()
            {
                if cur
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                {
                    if let Some(Value::Object(spec)) = cur.get_mut("spec") {
                        spec.remove("finalizers");
                    }
                    cur = self.put(storage, cur);
                    changed = true;
                }
                if finalizers(&cur).is_empty() {
                    self.remove(storage, &key.0, &key.1);
                    changed = true;
                }
            }
        }
        changed
    }
}
