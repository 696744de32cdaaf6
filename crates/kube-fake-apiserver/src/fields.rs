//! managedFields: field sets (FieldsV1), the structured-merge-diff style comparison used for
//! Update operations, built on the list/map semantics (atomic, map-list, set) of `field_schema`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::field_schema::{Hints, ListType};

/// A set of field paths, as a tree keyed by FieldsV1 path elements (`f:x`, `k:{..}`, `v:..`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[String]) {
        let mut cur = self;
        for el in path {
            cur = cur.children.entry(el.clone()).or_default();
        }
        cur.member = true;
    }

    pub fn contains(&self, path: &[String]) -> bool {
        let mut cur = self;
        for el in path {
            match cur.children.get(el) {
                Some(c) => cur = c,
                None => return false,
            }
        }
        cur.member
    }

    fn prune(&mut self) {
        for c in self.children.values_mut() {
            c.prune();
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, v) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(v),
                None => v.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => v.difference(o),
                None => v.clone(),
            };
            out.children.insert(k.clone(), d);
        }
        out.prune();
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                out.children.insert(k.clone(), v.intersection(o));
            }
        }
        out.prune();
        out
    }

    /// Every member path.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, v) in &self.children {
            prefix.push(k.clone());
            v.collect(prefix, out);
            prefix.pop();
        }
    }

    /// A set holding only the subtree under `el` (e.g. keep only `f:status`).
    pub fn only(&self, el: &str) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(c) = self.children.get(el) {
            out.children.insert(el.to_string(), c.clone());
        }
        out
    }

    pub fn without(&self, el: &str) -> FieldSet {
        let mut out = self.clone();
        out.children.remove(el);
        out
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, v) in &self.children {
            if !v.is_empty() {
                m.insert(k.clone(), v.to_json());
            }
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(obj) = v.as_object() {
            for (k, child) in obj {
                if k == "." {
                    out.member = true;
                    continue;
                }
                let mut c = FieldSet::from_json(child);
                if child.as_object().is_some_and(Map::is_empty) {
                    c.member = true;
                }
                out.children.insert(k.clone(), c);
            }
        }
        out
    }
}

/// Path element for an object field.
pub fn field_el(name: &str) -> String {
    format!("f:{name}")
}

/// Path element of a list item, or None when the item cannot be keyed (the list is then atomic).
pub fn item_el(lt: &ListType, item: &Value) -> Option<String> {
    match lt {
        ListType::Atomic => None,
        ListType::Set => Some(format!("v:{}", item)),
        ListType::Map(keys) => {
            let obj = item.as_object()?;
            let mut m = Map::new();
            for k in keys {
                // Defaulted keys (e.g. protocol) may be missing; skip them rather than fail.
                if let Some(v) = obj.get(k) {
                    m.insert(k.clone(), v.clone());
                }
            }
            if m.is_empty() {
                return None;
            }
            Some(format!("k:{}", Value::Object(m)))
        }
    }
}

/// Renders a path the way structured-merge-diff prints it in conflicts: `.spec.size`, `.status.conditions[type="Ready"]`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = el.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// Walks values with their hint path.
struct Walker<'a> {
    hints: &'a Hints,
}

fn is_structured_obj(h: &Hints, hp: &[String], v: &Value) -> bool {
    v.is_object() && !h.atomic_map(hp)
}

impl Walker<'_> {
    /// Field set of an applied configuration (structured-merge-diff `ToFieldSet`): leaves, list
    /// items and empty maps are members; non-empty maps are not.
    fn to_set(&self, v: &Value, path: &mut Vec<String>, hp: &mut Vec<String>, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !self.hints.atomic_map(hp) => {
                if m.is_empty() && !path.is_empty() {
                    out.insert(path);
                }
                for (k, child) in m {
                    path.push(field_el(k));
                    hp.push(k.clone());
                    self.to_set(child, path, hp, out);
                    hp.pop();
                    path.pop();
                }
            }
            Value::Array(items) => {
                let lt = self.hints.list_type(hp);
                let els: Option<Vec<String>> = items.iter().map(|i| item_el(&lt, i)).collect();
                match els {
                    Some(els) if lt != ListType::Atomic => {
                        for (el, item) in els.into_iter().zip(items) {
                            path.push(el);
                            out.insert(path);
                            if matches!(lt, ListType::Map(_)) {
                                hp.push("[]".into());
                                if let (false, Value::Object(m)) = (self.hints.atomic_map(hp), item) {
                                    for (k, child) in m {
                                        path.push(field_el(k));
                                        hp.push(k.clone());
                                        self.to_set(child, path, hp, out);
                                        hp.pop();
                                        path.pop();
                                    }
                                }
                                hp.pop();
                            }
                            path.pop();
                        }
                    }
                    _ => out.insert(path),
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path)
                }
            }
        }
    }

    /// Every node (intermediate ones included) of a value.
    fn full_set(&self, v: &Value, path: &mut Vec<String>, hp: &mut Vec<String>, out: &mut FieldSet) {
        if !path.is_empty() {
            out.insert(path);
        }
        match v {
            Value::Object(m) if !self.hints.atomic_map(hp) => {
                for (k, child) in m {
                    path.push(field_el(k));
                    hp.push(k.clone());
                    self.full_set(child, path, hp, out);
                    hp.pop();
                    path.pop();
                }
            }
            Value::Array(items) => {
                let lt = self.hints.list_type(hp);
                if let Some(els) = items.iter().map(|i| item_el(&lt, i)).collect::<Option<Vec<String>>>() {
                    for (el, item) in els.into_iter().zip(items) {
                        path.push(el);
                        hp.push("[]".into());
                        if matches!(lt, ListType::Map(_)) {
                            self.full_set(item, path, hp, out);
                        } else {
                            out.insert(path);
                        }
                        hp.pop();
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }

    fn compare(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        path: &mut Vec<String>,
        hp: &mut Vec<String>,
        changed: &mut FieldSet,
        removed: &mut FieldSet,
    ) {
        match (old, new) {
            (None, None) => {}
            (None, Some(n)) => self.full_set(n, path, hp, changed),
            (Some(o), None) => self.full_set(o, path, hp, removed),
            (Some(Value::Null), Some(n)) if n.is_object() || n.is_array() => {
                let empty = if n.is_object() {
                    Value::Object(Map::new())
                } else {
                    Value::Array(Vec::new())
                };
                self.compare(Some(&empty), Some(n), path, hp, changed, removed);
            }
            (Some(o), Some(n)) => {
                let both_obj = is_structured_obj(self.hints, hp, o) && is_structured_obj(self.hints, hp, n);
                let lt = self.hints.list_type(hp);
                let keyed = |v: &Value| -> Option<Vec<(String, Value)>> {
                    let arr = v.as_array()?;
                    arr.iter().map(|i| item_el(&lt, i).map(|e| (e, i.clone()))).collect()
                };
                if both_obj {
                    let (Some(om), Some(nm)) = (o.as_object(), n.as_object()) else {
                        return;
                    };
                    let mut keys: Vec<&String> = om.keys().chain(nm.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        path.push(field_el(k));
                        hp.push(k.clone());
                        self.compare(om.get(k), nm.get(k), path, hp, changed, removed);
                        hp.pop();
                        path.pop();
                    }
                } else if lt != ListType::Atomic
                    && let (Some(ol), Some(nl)) = (keyed(o), keyed(n))
                {
                    let om: BTreeMap<String, Value> = ol.into_iter().collect();
                    let nm: BTreeMap<String, Value> = nl.into_iter().collect();
                    let mut keys: Vec<&String> = om.keys().chain(nm.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        path.push(k.clone());
                        hp.push("[]".into());
                        if matches!(lt, ListType::Map(_)) {
                            self.compare(om.get(k), nm.get(k), path, hp, changed, removed);
                        } else {
                            match (om.contains_key(k), nm.contains_key(k)) {
                                (false, true) => changed.insert(path),
                                (true, false) => removed.insert(path),
                                _ => {}
                            }
                        }
                        hp.pop();
                        path.pop();
                    }
                } else if o != n {
                    if !path.is_empty() {
                        changed.insert(path);
                    }
                    // A structured old value replaced by something else loses its children.
                    if is_structured_obj(self.hints, hp, o) || (o.is_array() && lt != ListType::Atomic) {
                        let mut sub = FieldSet::default();
                        self.full_set(o, path, hp, &mut sub);
                        let mut now = FieldSet::default();
                        self.full_set(n, path, hp, &mut now);
                        *removed = removed.union(&sub.difference(&now));
                        *changed = changed.union(&now);
                    } else if is_structured_obj(self.hints, hp, n) || n.is_array() {
                        self.full_set(n, path, hp, changed);
                    }
                }
            }
        }
    }

    fn merge(&self, live: &Value, config: &Value, hp: &mut Vec<String>) -> Value {
        match (live, config) {
            (Value::Object(l), Value::Object(c)) if !self.hints.atomic_map(hp) => {
                let mut out = l.clone();
                for (k, cv) in c {
                    hp.push(k.clone());
                    let merged = match l.get(k) {
                        Some(lv) => self.merge(lv, cv, hp),
                        None => cv.clone(),
                    };
                    hp.pop();
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (Value::Array(l), Value::Array(c)) => {
                let lt = self.hints.list_type(hp);
                if lt == ListType::Atomic {
                    return config.clone();
                }
                let mut out: Vec<Value> = l.clone();
                for ci in c {
                    let Some(cel) = item_el(&lt, ci) else {
                        return config.clone();
                    };
                    let pos = out.iter().position(|li| item_el(&lt, li).as_ref() == Some(&cel));
                    match pos {
                        Some(p) => {
                            hp.push("[]".into());
                            let merged = self.merge(&out[p], ci, hp);
                            hp.pop();
                            out[p] = merged;
                        }
                        None => out.push(ci.clone()),
                    }
                }
                Value::Array(out)
            }
            _ => config.clone(),
        }
    }
}

/// Fields that are never tracked in managedFields.
pub fn strip_untracked(set: &FieldSet) -> FieldSet {
    let mut out = set.without("f:apiVersion").without("f:kind");
    if let Some(meta) = out.children.get_mut("f:metadata") {
        meta.member = false;
        for f in [
            "name",
            "namespace",
            "generateName",
            "creationTimestamp",
            "selfLink",
            "uid",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.children.remove(&field_el(f));
        }
    }
    out.prune();
    out
}

pub fn to_field_set(hints: &Hints, v: &Value) -> FieldSet {
    let mut out = FieldSet::default();
    Walker { hints }.to_set(v, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// (Added ∪ Modified, Removed) between two objects.
pub fn compare(hints: &Hints, old: &Value, new: &Value) -> (FieldSet, FieldSet) {
    let mut changed = FieldSet::default();
    let mut removed = FieldSet::default();
    Walker { hints }.compare(
        Some(old),
        Some(new),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut changed,
        &mut removed,
    );
    (changed, removed)
}

/// Structured merge of an applied configuration into the live object.
pub fn merge(hints: &Hints, live: &Value, config: &Value) -> Value {
    Walker { hints }.merge(live, config, &mut Vec::new())
}

/// Removes one path (as FieldsV1 elements) from a value. A map left empty by the removal goes
/// too, as in structured-merge-diff's removing walker (it only keeps maps with entries left).
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(f) = first.strip_prefix("f:") {
        let Some(obj) = v.as_object_mut() else { return };
        if rest.is_empty() {
            obj.remove(f);
        } else if let Some(child) = obj.get_mut(f) {
            remove_path(child, rest);
            if child.as_object().is_some_and(Map::is_empty) {
                obj.remove(f);
            }
        }
        return;
    }
    let Some(arr) = v.as_array_mut() else { return };
    let matches = |item: &Value| -> bool {
        if let Some(k) = first.strip_prefix("k:") {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(k) else {
                return false;
            };
            keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv))
        } else if let Some(val) = first.strip_prefix("v:") {
            serde_json::from_str::<Value>(val).is_ok_and(|x| &x == item)
        } else {
            false
        }
    };
    if let Some(pos) = arr.iter().position(matches) {
        if rest.is_empty() {
            arr.remove(pos);
        } else {
            remove_path(&mut arr[pos], rest);
        }
    }
}

/// One managedFields entry, decoded.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<Value>,
    pub set: FieldSet,
}

impl Entry {
    fn same_key(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    /// How the real server names a manager in conflict messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        // The manager identifier the message is printed from never carries the time
        // (BuildManagerIdentifier drops it), so no "at <time>" (uid-preconditions.json).
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

pub fn decode_entries(obj: &Value) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in obj["metadata"]["managedFields"].as_array().into_iter().flatten() {
        out.push(Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or_default().to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            time: e.get("time").cloned(),
            set: FieldSet::from_json(&e["fieldsV1"]),
        });
    }
    out
}

/// Encodes entries sorted like the real server (operation, time, manager, subresource).
pub fn encode_entries(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        let ta = a.time.as_ref().and_then(Value::as_str).unwrap_or_default().to_string();
        let tb = b.time.as_ref().and_then(Value::as_str).unwrap_or_default().to_string();
        (a.operation.as_str(), ta, a.manager.as_str(), a.subresource.as_str()).cmp(&(
            b.operation.as_str(),
            tb,
            b.manager.as_str(),
            b.subresource.as_str(),
        ))
    });
    Value::Array(
        entries
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = e.time {
                    m.insert("time".into(), t);
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_json());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Encoded entries, or null (field omitted) when there are none.
pub fn encode_or_null(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.set.is_empty());
    if entries.is_empty() {
        Value::Null
    } else {
        encode_entries(entries)
    }
}

/// Restricts a set to what a write through the given subresource may own.
pub fn scope_set(set: &FieldSet, subresource: &str, status_split: bool) -> FieldSet {
    let s = strip_untracked(set);
    if subresource == "status" {
        s.only("f:status")
    } else if status_split {
        s.without("f:status")
    } else {
        s
    }
}

/// managedFields bookkeeping for a non-apply write (create, update, patch).
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    hints: &Hints,
    old: &Value,
    new: &Value,
    entries: &mut Vec<Entry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    status_split: bool,
    now: &str,
) {
    let (changed, removed) = compare(hints, old, new);
    let changed = scope_set(&changed, subresource, status_split);
    let removed = scope_set(&removed, subresource, status_split);
    for e in entries.iter_mut() {
        if e.same_key(manager, "Update", api_version, subresource) {
            continue;
        }
        e.set = e.set.difference(&changed).difference(&removed);
    }
    let pos = entries
        .iter()
        .position(|e| e.same_key(manager, "Update", api_version, subresource));
    let idx = match pos {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                subresource: subresource.to_string(),
                time: None,
                set: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[idx];
    e.set = e.set.difference(&removed).union(&changed);
    if !changed.is_empty() {
        e.time = Some(json!(now));
        e.api_version = api_version.to_string();
    }
    entries.retain(|e| !e.set.is_empty());
}

/// Outcome of a server-side apply merge.
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
    /// (manager description, path) per conflicting field.
    pub conflicts: Vec<(String, String)>,
}

/// Server-side apply: merges `config` into `live`, removes fields this manager no longer applies
/// (unless others own them), detects conflicts with other managers, and updates ownership.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    hints: &Hints,
    live: &Value,
    config: &Value,
    mut entries: Vec<Entry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    status_split: bool,
    force: bool,
    now: &str,
) -> Applied {
    let config_set = scope_set(&to_field_set(hints, config), subresource, status_split);
    let mut merged = merge(hints, live, config);
    let mine = entries
        .iter()
        .position(|e| e.same_key(manager, "Apply", api_version, subresource));
    let last = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
    let mut others = FieldSet::default();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) != mine {
            others = others.union(&e.set);
        }
    }
    let dropped = last.difference(&config_set).difference(&others);
    // Remove deepest paths first so parents don't vanish under their children.
    let mut paths = dropped.paths();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        remove_path(&mut merged, &p);
    }
    let (changed, removed) = compare(hints, live, &merged);
    let changed = scope_set(&changed, subresource, status_split);
    let removed = scope_set(&removed, subresource, status_split);
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == mine {
            continue;
        }
        for p in e.set.intersection(&changed).paths() {
            conflicts.push((e.describe(), path_string(&p)));
        }
    }
    if !conflicts.is_empty() && !force {
        return Applied {
            object: merged,
            entries,
            conflicts,
        };
    }
    let unchanged = changed.is_empty() && removed.is_empty() && last == config_set && mine.is_some();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            e.set = e.set.difference(&changed).difference(&removed);
        }
    }
    match mine {
        Some(i) => {
            entries[i].set = config_set;
            if !unchanged {
                entries[i].time = Some(json!(now));
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: Some(json!(now)),
            set: config_set,
        }),
    }
    entries.retain(|e| !e.set.is_empty());
    Applied {
        object: merged,
        entries,
        conflicts: Vec::new(),
    }
}
